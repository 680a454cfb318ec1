"""The provider as Airflow sees it: entry point and `airflow providers list`, connection form,
cheap DAG parsing (no openai import, no hook built), no deprecation warnings from our code, and
operators that serialize and keep the seed's templated fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ovh_ai_dagfactory.compat import AIRFLOW_V3, DAG
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)
from ovh_ai_dagfactory.provider_info import get_provider_info
from provider.shared import REPO_ROOT


def _python(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ.copy(), timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


PARSE_A_DAG = """
import json, sys, warnings
from datetime import datetime
import airflow  # Airflow's own import-time warnings are not ours; ours come after

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from ovh_ai_dagfactory.compat import DAG
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
    from ovh_ai_dagfactory.operators.ai_endpoints import (
        OVHCloudAIEndpointsChatCompletionsOperator, OVHCloudAIEndpointsEmbeddingOperator)
    from ovh_ai_dagfactory.provider_info import get_provider_info
    get_provider_info()
    OVHCloudAIEndpointsHook.get_ui_field_behaviour()
    with DAG(dag_id="parse_only", start_date=datetime(2024, 1, 1), schedule=None) as dag:
        chat = OVHCloudAIEndpointsChatCompletionsOperator(task_id="chat", model="m", messages=[{"role": "user", "content": "x"}])
        embed = OVHCloudAIEndpointsEmbeddingOperator(task_id="embed", model="BGE-M3", input="x")
    hook = OVHCloudAIEndpointsHook(ovh_conn_id="never_looked_up")
ours = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
        if "ovh_ai_dagfactory" in w.filename]
print(json.dumps({"openai_imported": "openai" in sys.modules, "our_warnings": ours,
                  "all_warnings": len(caught), "hook_built": "hook" in chat.__dict__ or "hook" in embed.__dict__,
                  "client_built": hook._client is not None}))
"""


def test_parsing_a_dag_imports_no_openai_builds_no_hook_and_warns_nothing_of_ours():
    result = _python(PARSE_A_DAG)
    assert result["openai_imported"] is False
    assert result["hook_built"] is False and result["client_built"] is False
    assert result["our_warnings"] == []


def test_the_warning_check_can_see_warnings_from_our_package():
    # Guard for the test above: a warning raised from our package's code is recorded by the same filter.
    code = PARSE_A_DAG.replace(
        "    get_provider_info()\n",
        "    import ovh_ai_dagfactory.provider_info as p\n"
        "    exec(compile('import warnings; warnings.warn(\"x\", DeprecationWarning)', p.__file__, 'exec'))\n",
    )
    assert len(_python(code)["our_warnings"]) == 1


def test_providers_manager_knows_our_connection_type_and_form():
    code = """
import json, warnings
import airflow
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from airflow.providers_manager import ProvidersManager
    pm = ProvidersManager()
    providers = pm.providers
    hook = pm.hooks["ovhcloud_ai_endpoints"]
    behaviour = pm.field_behaviours.get("ovhcloud_ai_endpoints")
ours = [str(w.message) for w in caught if "ovh_ai_dagfactory" in str(w.message) or "ovh_ai_dagfactory" in w.filename]
print(json.dumps({"registered": "ovh-ai-dagfactory" in providers, "hook_class": hook.hook_class_name,
                  "hook_name": hook.hook_name, "conn_id_attr": hook.connection_id_attribute_name,
                  "behaviour": behaviour, "warnings": ours}))
"""
    result = _python(code)
    assert result["registered"]
    assert result["hook_class"] == "ovh_ai_dagfactory.hooks.ai_endpoints.OVHCloudAIEndpointsHook"
    assert result["hook_name"] == "OVHcloud AI Endpoints"
    assert result["warnings"] == []  # Airflow 3 warns when it must call get_ui_field_behaviour()
    behaviour = result["behaviour"]
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login"}
    assert behaviour["relabeling"] == {"host": "Base URL (optional)", "password": "API token"}
    assert any("oai.endpoints.kepler.ai.cloud.ovh.net" in v for v in behaviour["placeholders"].values())


def test_airflow_providers_list_shows_us():
    airflow_cli = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(airflow_cli), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Airflow may log to stdout before the JSON document: take the line that holds it.
    listed = json.loads([line for line in result.stdout.splitlines() if line.startswith("[{")][-1])
    [ours] = [p for p in listed if p["package_name"] == "ovh-ai-dagfactory"]
    assert ours["version"] == get_provider_info()["versions"][0]


def test_provider_info_declares_hook_operators_and_connection_type():
    info = get_provider_info()
    assert info["package-name"] == "ovh-ai-dagfactory"
    assert (
        info["connection-types"][0]["connection-type"] == OVHCloudAIEndpointsHook.conn_type == "ovhcloud_ai_endpoints"
    )
    assert info["connection-types"][0]["hook-class-name"].endswith(".OVHCloudAIEndpointsHook")
    assert info["hooks"][0]["python-modules"] == ["ovh_ai_dagfactory.hooks.ai_endpoints"]
    assert info["operators"][0]["python-modules"] == [
        "ovh_ai_dagfactory.operators.ai_endpoints",
        "ovh_ai_dagfactory.operators.batch",
        "ovh_ai_dagfactory.operators.chat_job",
    ]


def test_hook_identity_and_form_on_airflow_2():
    assert OVHCloudAIEndpointsHook.conn_name_attr == "ovh_conn_id"
    assert OVHCloudAIEndpointsHook.default_conn_name == "ovh_ai_endpoints_default"
    behaviour = OVHCloudAIEndpointsHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "API token" and "login" in behaviour["hidden_fields"]


def test_operators_keep_the_seed_signature_templates_and_serialize():
    with DAG(dag_id="serialize_me", start_date=datetime(2024, 1, 1), schedule=None) as dag:
        chat = OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat", model="{{ var.value.llm_model }}", messages=[{"role": "user", "content": "{{ ds }}"}]
        )
        embed = OVHCloudAIEndpointsEmbeddingOperator(task_id="embed", model="BGE-M3", input=["a", "b"])
    # The seed's templated fields first; issue #8 added the *_kwargs (shown as JSON) and ovh_conn_id.
    assert chat.template_fields == ("model", "messages", "completion_kwargs", "ovh_conn_id")
    assert chat.template_fields_renderers == {"messages": "json", "completion_kwargs": "json"}
    assert embed.template_fields == (
        "model",
        "input",
        "embedding_kwargs",
        "ovh_conn_id",
        "input_file",
        "output_uri",
        "input_conn_id",
        "output_conn_id",
    )
    assert embed.template_fields_renderers == {"input": "json", "embedding_kwargs": "json"}
    assert chat.completion_kwargs is None and embed.embedding_kwargs is None
    assert (chat.temperature, chat.max_tokens, chat.top_p, chat.stop) == (1.0, None, None, None)
    assert chat.ovh_conn_id == embed.ovh_conn_id == "ovh_ai_endpoints_default"

    if AIRFLOW_V3:
        from airflow.serialization.serialized_objects import DagSerialization

        serialized = DagSerialization.to_dict(dag)
    else:
        from airflow.serialization.serialized_objects import SerializedDAG

        serialized = SerializedDAG.to_dict(dag)
    tasks = {t["__var"]["task_id"] if "__var" in t else t["task_id"]: t for t in serialized["dag"]["tasks"]}
    assert set(tasks) == {"chat", "embed"}
    # The template is serialized unrendered: rendering happens at run time, not at parse time.
    assert "{{ var.value.llm_model }}" in json.dumps(tasks["chat"])


@pytest.mark.parametrize("operator", [OVHCloudAIEndpointsChatCompletionsOperator, OVHCloudAIEndpointsEmbeddingOperator])
def test_execute_is_made_of_overridable_steps(operator):
    for step in ("build_request", "call_endpoint", "log_usage", "result"):
        assert callable(getattr(operator, step))

"""Issue 4, "Tests", second bullet: the example pipelines in a real Airflow.

A DAG folder holds the two-line loader file, a copy of `pipelines/*.yaml` and one broken pipeline.
Real Airflow services (see `airflow_services.py`) parse it; the test then works only through the
REST API, as a user or a CI job would:

- every valid pipeline is listed as a DAG; the broken file's error is visible through the API with
  its FILE:LINE:COL text; the loader file itself has no import error (one broken file hides nothing);
- runs triggered over REST succeed on the scheduler's executor, with the chat endpoint served by
  llmock (a real HTTP server on 127.0.0.1 in this process);
- XCom holds the responses; the `steps.<id>.content` reference reached the next step; Airflow
  templating (`var.value`, `ds`) was rendered before the request left the worker;
- llmock's journal shows the requests the workers sent; the API token appears in no DAG detail
  and in no log.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from e2e.airflow_services import AirflowServices, Deadline

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "sk-test-e2e-7d41c0a9b3f25e68"  # fake; asserted never to leak
CONN_ID = "ovh_ai_endpoints_default"
LLM_MODEL_VAR = "Mistral-Nemo-Instruct-2407"  # the Airflow Variable `llm_model`, set via env
REPORT_DATE = datetime(2024, 6, 1, tzinfo=timezone.utc)

#: Broken on purpose: a typo'd key. The spec reports it at line 8, column 5.
BROKEN_PIPELINE = """\
# A pipeline with a typo: `mesages` instead of `messages`.
dag_id: e2e_broken_pipeline
start_date: 2024-01-01
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    mesages:
      - {role: user, content: hello}
"""
BROKEN_ERROR = "broken_pipeline.yaml:8:5: error: unknown key 'mesages' in step 'ask'"


def _dag_ids(folder: Path) -> dict[str, str]:
    """dag_id per example file, read from its top-level `dag_id:` line (no YAML parser: the test
    must not depend on the loader's parser, nor disagree with it — PyYAML's pure-Python parser
    rejects `{content: How do I read a CSV file?}`, which libyaml accepts)."""
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        match = re.search(r"^dag_id:\s*[\"']?([\w.-]+)", path.read_text(), re.MULTILINE)
        assert match, f"no top-level dag_id in {path}"
        out[match.group(1)] = path.name
    return out


def _dag_folder(root: Path) -> Path:
    dags = root / "dags"
    pipelines = dags / "pipelines"
    pipelines.mkdir(parents=True)
    for path in (REPO_ROOT / "pipelines").glob("*.yaml"):
        shutil.copy(path, pipelines / path.name)
    (pipelines / "broken_pipeline.yaml").write_text(BROKEN_PIPELINE)
    # The loader file as the README documents it. The comment is load-bearing: Airflow's safe mode
    # skips a .py file that lacks the words "airflow" and "dag", and the two code lines alone have
    # no "airflow" (this test fails with no DAG listed without it).
    (dags / "ovh_pipelines.py").write_text(
        "# airflow DAG loader: one DAG per pipeline file\n"
        "from ovh_ai_dagfactory import load_pipelines\n"
        f"load_pipelines({str(pipelines)!r}, globals())\n"
    )
    return dags


def _journal(llmock: Any) -> list[dict[str, Any]]:
    return [{"path": r.path, "status": r.status, "model": r.model, "body": r.body} for r in llmock.requests]


def test_example_pipelines_in_a_real_airflow(tmp_path: Path, llmock: Any) -> None:
    deadline = Deadline(180)  # the whole test, start-up included
    dags = _dag_folder(tmp_path)
    expected = _dag_ids(REPO_ROOT / "pipelines")
    assert {"chat_completion_example", "summarize_then_embed", "templated_example"} <= set(expected)

    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": llmock.base_url("openai"), "password": TOKEN}
        ),
        "AIRFLOW_VAR_LLM_MODEL": LLM_MODEL_VAR,
    }
    services = AirflowServices(dags, extra_env=env, keep_home=True, deadline=deadline)
    try:
        with services:
            _scenario(services, llmock, deadline, expected)
            logs_text = _all_logs(services.home)
    finally:
        home = services.home
        print(
            f"\ne2e real Airflow {services.major}.x: start {services.timings}, "
            f"wall {deadline.elapsed():.1f}s, {services.memory.summary()}"
        )
        shutil.rmtree(home, ignore_errors=True)
    assert TOKEN not in logs_text, "the API token leaked into a service or task log"


def _scenario(services: AirflowServices, llmock: Any, deadline: Deadline, expected: dict[str, str]) -> None:
    api = services.api

    # 1. Parsing: every valid pipeline listed, the broken one reported with FILE:LINE:COL.
    listed, errors = services.wait_for_dags(expected, deadline, import_error_files={"broken_pipeline.yaml"})
    by_file = {Path(e["filename"]).name: e for e in errors}
    assert BROKEN_ERROR in by_file["broken_pipeline.yaml"]["stack_trace"], by_file
    assert "did you mean 'messages'" in by_file["broken_pipeline.yaml"]["stack_trace"]
    assert "ovh_pipelines.py" not in by_file, f"the loader file itself failed: {by_file['ovh_pipelines.py']}"
    assert "e2e_broken_pipeline" not in listed
    for dag_id in expected:
        assert not listed[dag_id].get("has_import_errors"), listed[dag_id]
        details = api.dag_details(dag_id)
        assert TOKEN not in json.dumps(details), f"token leaked into {dag_id} details"

    # 2. Runs triggered over REST (all at once: the executor may run them in parallel).
    runs = {
        "chat_completion_example": api.trigger("chat_completion_example"),
        "summarize_then_embed": api.trigger("summarize_then_embed"),
        "templated_example": api.trigger("templated_example", logical_date=REPORT_DATE),
    }
    for dag_id, run in runs.items():
        final = services.wait_for_run(dag_id, run["dag_run_id"], deadline)
        assert final["state"] == "success", (
            f"{dag_id} run {final['state']}; tasks "
            f"{[(t['task_id'], t['state']) for t in api.task_instances(dag_id, run['dag_run_id'])]}\n" + services.logs()
        )

    def xcom(dag_id: str, task_id: str) -> Any:
        return api.xcom(dag_id, runs[dag_id]["dag_run_id"], task_id)

    journal = _journal(llmock)
    chats = [r for r in journal if r["path"].endswith("/chat/completions")]
    embeddings = [r for r in journal if r["path"].endswith("/embeddings")]
    assert all(r["status"] == 200 for r in journal), journal

    # 3. basic chat: XCom holds the chat response for the model the pipeline asked for.
    answer = xcom("chat_completion_example", "generate_response")
    assert answer["model"] == "Meta-Llama-3_3-70B-Instruct", answer
    assert answer["choices"][0]["message"]["content"].strip(), answer
    basic = [r for r in chats if r["body"]["messages"][-1]["content"] == "Explain machine learning in simple terms."]
    assert len(basic) == 1, chats
    assert basic[0]["body"]["model"] == "Meta-Llama-3_3-70B-Instruct"
    assert basic[0]["body"]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}

    # 4. summarize_then_embed: the embedding step embedded what the chat step answered.
    summary = xcom("summarize_then_embed", "summarize")
    summary_text = summary["choices"][0]["message"]["content"]
    assert summary_text.strip(), summary
    vectors = xcom("summarize_then_embed", "embed_summary")
    assert vectors["data"] and vectors["data"][0]["embedding"], vectors
    assert [r["body"]["input"] for r in embeddings] == [summary_text], embeddings
    assert embeddings[0]["body"]["model"] == "BGE-M3"

    # 5. templated_example: `{{ var.value.llm_model }}` and `{{ ds }}` rendered by Airflow.
    report = xcom("templated_example", "analyze_daily_data")
    assert report["model"] == LLM_MODEL_VAR, report
    templated = [r for r in chats if r["body"]["model"] == LLM_MODEL_VAR]
    assert len(templated) == 1, chats
    assert templated[0]["body"]["messages"][-1]["content"] == "Generate a report summary for 2024-06-01"

    # Exactly the requests of the three runs: 3 chats + 1 embedding, no retry, no stray call.
    assert (len(chats), len(embeddings)) == (3, 1), journal
    # Authenticated with the connection's token, not llmock's dummy OPENAI_API_KEY.
    # (llmock does not journal headers; the token-in-logs check is in the caller.)


def _all_logs(home: Path) -> str:
    parts = []
    for path in sorted(home.rglob("*.log")):
        try:
            parts.append(path.read_text(errors="replace"))
        except OSError:
            pass
    return "\n".join(parts)

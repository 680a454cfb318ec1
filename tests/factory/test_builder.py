"""What the builder maps: DAG arguments, step parameters, connections, edges, doc_md — and every
example DAG surviving Airflow's serialization round trip (what any executor relies on)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import round_trip

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec.parse import parse_pipeline_text
from tests.factory.conftest import EXAMPLES

PIPELINE = """\
dag_id: mapped
description: Everything the builder maps
schedule: "0 6 * * *"
start_date: 2024-01-01
end_date: 2030-01-01
catchup: true
tags: [a, b]
max_active_runs: 2
params: {topic: airflow}
default_args: {owner: data, retries: 2, retry_delay: 5m, execution_timeout: 1h}
connection: pipeline_conn
defaults:
  chat: {model: "{{ var.value.secret_model }}", temperature: 0.2}
steps:
  first:
    type: chat
    messages: [{role: user, content: "About {{ params.topic }}"}]
    stop: [END, STOP]
    top_p: 0.9
    connection: step_conn
    retries: 5
  second:
    type: chat
    model: other-model
    messages: [{role: user, content: "Use {{ steps.first.content }}"}]
    execution_timeout: 30s
  third:
    type: embedding
    model: BGE-M3
    input: [x, y]
    depends_on: [first, second]
"""


@pytest.fixture(scope="module")
def mapped():
    return build_dag(parse_pipeline_text(PIPELINE, "/somewhere/mapped.yaml"), source_label="pipelines/mapped.yaml")


def test_dag_arguments(mapped):
    assert mapped.dag_id == "mapped" and mapped.description == "Everything the builder maps"
    assert mapped.catchup is True and sorted(mapped.tags) == ["a", "b"] and mapped.max_active_runs == 2
    assert mapped.start_date.year == 2024 and mapped.end_date.year == 2030
    assert mapped.params["topic"] == "airflow"
    assert mapped.default_args == {
        "owner": "data",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=1),
    }


def test_step_parameters_defaults_and_connections(mapped):
    first, second, third = (mapped.get_task(name) for name in ("first", "second", "third"))
    assert first.model == "{{ var.value.secret_model }}" and first.temperature == 0.2
    assert first.stop == ["END", "STOP"] and first.top_p == 0.9 and first.max_tokens is None
    assert first.ovh_conn_id == "step_conn" and first.retries == 5  # the step's own wins
    assert second.ovh_conn_id == "pipeline_conn" and second.retries == 2  # pipeline, default_args
    assert second.execution_timeout == timedelta(seconds=30)
    assert third.input == ["x", "y"] and third.ovh_conn_id == "pipeline_conn"
    assert first.owner == "data" and first.retry_delay == timedelta(minutes=5)


def test_edges_from_depends_on_and_references(mapped):
    assert mapped.get_task("second").upstream_task_ids == {"first"}  # implied by steps.first
    assert mapped.get_task("third").upstream_task_ids == {"first", "second"}


def test_connection_falls_back_to_the_operator_default():
    pipeline = parse_pipeline_text(
        "start_date: 2024-01-01\nsteps:\n  a: {type: embedding, model: BGE-M3, input: x}\n", "/p/plain.yaml"
    )
    assert build_dag(pipeline).get_task("a").ovh_conn_id == "ovh_ai_endpoints_default"


def test_doc_md_shows_description_source_and_steps_never_values(mapped, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SECRET_MODEL", "do-not-show")
    doc = mapped.doc_md
    assert doc.startswith("Everything the builder maps")
    assert "`pipelines/mapped.yaml`" in doc and "/somewhere" not in doc
    assert "| `third` | embedding | `BGE-M3` | `first`, `second` |" in doc
    assert "{{ var.value.secret_model }}" in doc and "do-not-show" not in doc


def test_ui_shows_the_public_operator_names(mapped):
    assert mapped.get_task("first").operator_name == "OVHCloudAIEndpointsChatCompletionsOperator"
    assert mapped.get_task("third").operator_name == "OVHCloudAIEndpointsEmbeddingOperator"


@pytest.mark.parametrize("name", sorted(path.stem for path in EXAMPLES.glob("*.yaml")))
def test_every_example_survives_serialization(example_pipelines, name):
    [dag_id] = [d for d, path in example_pipelines.loaded.items() if path.endswith(f"{name}.yaml")]
    dag = example_pipelines.dags[dag_id]
    restored = round_trip(dag)
    assert restored.dag_id == dag.dag_id and restored.doc_md == dag.doc_md
    assert set(restored.task_dict) == set(dag.task_dict)
    for task_id, task in dag.task_dict.items():
        back = restored.task_dict[task_id]
        assert back.upstream_task_ids == task.upstream_task_ids
        assert back.retries == task.retries and back.retry_delay == task.retry_delay
        for field in task.template_fields:
            if hasattr(task, "partial_kwargs"):  # a for_each step: its arguments are the partial ones
                stored = _unwrapped(back.partial_kwargs.get(field))
                assert stored == task.partial_kwargs.get(field), (task_id, field)
            else:
                assert getattr(back, field) == getattr(task, field), (task_id, field)
        assert back.operator_name == task.operator_name


def _unwrapped(value):
    """Airflow 3.3 leaves values nested in a mapped task's partial arguments in their serialized form
    ({"__var": ..., "__type": "dict"}) after a round trip; only workers, which re-parse the DAG file,
    render them. Unwrapped here to compare what was stored."""
    if isinstance(value, dict) and set(value) == {"__var", "__type"}:
        return _unwrapped(value["__var"])
    if isinstance(value, dict):
        return {key: _unwrapped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrapped(item) for item in value]
    return value


def test_mapped_pipeline_survives_serialization(mapped):
    restored = round_trip(mapped)
    assert restored.get_task("third").upstream_task_ids == {"first", "second"}
    assert restored.get_task("first").messages == [{"role": "user", "content": "About {{ params.topic }}"}]

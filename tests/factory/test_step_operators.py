"""The pipeline operators as Airflow operators: `step_kinds` is a constructor argument like any other,
so `partial()` / `expand()` build a mapped task that serializes and runs with `steps.<id>` in its
templates; `steps` is a name of pipeline operators only; and a DAG-folder parse (what a worker does
before running a task) gives every task its pipeline's step kinds."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import round_trip, run_dag, serialized, task_states

from ovh_ai_dagfactory.compat import DAG, AirflowException
from ovh_ai_dagfactory.factory.step_operators import PipelineChatOperator, PipelineEmbeddingOperator
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator

MODEL = "Meta-Llama-3_3-70B-Instruct"
KINDS = {"ask": "chat", "fan": "chat"}
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _fan_out_dag(dag_id: str):
    with DAG(dag_id=dag_id, schedule=None, start_date=START) as dag:
        ask = PipelineChatOperator(task_id="ask", step_kinds=KINDS, model=MODEL, messages=_user("Name a colour"))
        fan = PipelineChatOperator.partial(task_id="fan", step_kinds=KINDS, model=MODEL).expand(
            messages=[_user("First: {{ steps.ask.content }}"), _user("Second: {{ steps['ask'].content }}")]
        )
        ask >> fan
    return dag


def _serialized_task(dag, task_id: str) -> dict:
    [task] = [task for task in serialized(dag)["dag"]["tasks"] if task["__var"]["task_id"] == task_id]
    return task["__var"]


def test_partial_expand_builds_a_mapped_task_that_serializes():
    dag = _fan_out_dag("fan_out_serialized")
    fan = dag.get_task("fan")
    assert type(fan).__name__ == "MappedOperator" and fan.partial_kwargs["step_kinds"] == KINDS
    assert fan.upstream_task_ids == {"ask"}
    # A mapped task's partial arguments are stored for the scheduler, step_kinds among them.
    stored = _serialized_task(dag, "fan")
    assert stored["_is_mapped"] is True and stored["partial_kwargs"]["step_kinds"]["__var"] == KINDS
    restored = round_trip(dag).get_task("fan")
    assert restored.partial_kwargs["step_kinds"] == KINDS and restored.upstream_task_ids == {"ask"}
    assert restored.operator_name == "OVHCloudAIEndpointsChatCompletionsOperator"


def test_a_plain_task_stores_no_step_kinds():
    """Only workers render templates, and they re-parse the DAG file: the stored DAG leaves it out."""
    dag = _fan_out_dag("fan_out_plain_task")
    assert "step_kinds" not in str(_serialized_task(dag, "ask"))
    assert round_trip(dag).get_task("ask").upstream_task_ids == set()


def test_mapped_task_runs_with_steps_in_its_templates(airflow_db, ovh_connection, llmock):
    dag = _fan_out_dag("fan_out_run")
    llmock.reply("Teal.")
    dag_run = run_dag(dag, logical_date=datetime(2024, 5, 6, tzinfo=timezone.utc))
    fan_states = sorted(str(ti.state) for ti in dag_run.get_task_instances() if ti.task_id == "fan")
    assert task_states(dag_run)["ask"] == "success" and fan_states == ["success", "success"]
    prompts = sorted(r.body["messages"][0]["content"] for r in llmock.requests if r.path.endswith("/chat/completions"))
    assert prompts == ["First: Teal.", "Name a colour", "Second: Teal."]


def test_steps_is_a_name_of_pipeline_operators_only(airflow_db, ovh_connection, llmock):
    question = _user("steps defined: {{ steps is defined }}")
    with DAG(dag_id="steps_only_in_pipelines", schedule=None, start_date=START) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(task_id="provider", model=MODEL, messages=question)
        PipelineChatOperator(task_id="pipeline", step_kinds={"pipeline": "chat"}, model=MODEL, messages=question)
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    prompts = sorted(r.body["messages"][0]["content"] for r in llmock.requests if r.path.endswith("/chat/completions"))
    assert prompts == ["steps defined: False", "steps defined: True"]


def test_step_kinds_is_required():
    # Airflow's own check of required arguments: TypeError on 3.x, AirflowException on 2.11.
    with pytest.raises((TypeError, AirflowException), match="missing keyword argument 'step_kinds'"):
        PipelineEmbeddingOperator(task_id="embed", model="BGE-M3", input="x")


LOADER_FILE = """\
# airflow DAG loader (ovh-ai-dagfactory)
from ovh_ai_dagfactory import load_pipelines

load_pipelines(None, globals(), cache_dir=False)
"""

PIPELINE = """\
dag_id: reparsed
start_date: 2024-01-01
steps:
  ask: {type: chat, model: m, messages: [{role: user, content: hi}]}
  embed: {type: embedding, model: BGE-M3, input: "{{ steps.ask.content }}"}
"""


def test_a_dag_folder_parse_gives_every_task_its_step_kinds(tmp_path: Path, airflow_major, monkeypatch):
    """What a worker does before running a task: parse the loader file (with its parsing context)."""
    monkeypatch.delenv("OVH_AI_DAGFACTORY_PIPELINES_FOLDER", raising=False)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "reparsed")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "embed")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "reparsed.yaml").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "loader.py").write_text(LOADER_FILE, encoding="utf-8")
    if airflow_major >= 3:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    dag = DagBag(dag_folder=str(tmp_path), safe_mode=True).dags["reparsed"]
    assert {task.task_id: task.step_kinds for task in dag.tasks} == {
        "ask": {"ask": "chat", "embed": "embedding"},
        "embed": {"ask": "chat", "embed": "embedding"},
    }

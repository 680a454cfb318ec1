"""Typed params become Airflow Params (Airflow validates run conf with them); plain defaults stay plain."""

from __future__ import annotations

from conftest import run_dag, task_states

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec import parse_pipeline_text

PIPELINE = """\
schedule: null
params:
  audience: executives
  top_n: {type: integer, minimum: 1, default: 5, description: How many topics}
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: "Top {{ params.top_n }} topics for {{ params.audience }}"}]
"""


def test_typed_params_are_airflow_params_and_render(airflow_db, ovh_connection, llmock):
    dag = build_dag(parse_pipeline_text(PIPELINE, "/pipelines/typed_params.yaml"))
    top_n = dag.params.get_param("top_n")
    assert (top_n.value, top_n.description, top_n.schema) == (5, "How many topics", {"type": "integer", "minimum": 1})
    assert dag.params.get_param("audience").value == "executives"
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}
    [body] = [request.body for request in llmock.requests if request.path.endswith("/chat/completions")]
    assert body["messages"][0]["content"] == "Top 5 topics for executives"

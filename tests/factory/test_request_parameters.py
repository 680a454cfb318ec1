"""Request parameters declared in YAML reach the endpoint, through Airflow, as the operator's
`completion_kwargs` / `embedding_kwargs`: modelled ones (checked by validate) and `extra_body`
(forwarded as it is)."""

from __future__ import annotations

from conftest import run_dag, task_states

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec import parse_pipeline_text

PIPELINE = """\
schedule: null
defaults:
  chat: {seed: 7, presence_penalty: 0.5}
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    frequency_penalty: -0.25
    extra_body: {repetition_penalty: 1.1, top_k: 40}
    messages: [{role: user, content: Hello}]
  embed:
    type: embedding
    model: BGE-M3
    input: "{{ steps.ask.content }}"
    extra_body: {truncate: true}
"""


def _bodies(llmock, suffix):
    return [request.body for request in llmock.requests if request.path.endswith(suffix)]


def test_extra_body_from_yaml_is_merged_into_the_request(airflow_db, ovh_connection, llmock):
    dag_run = run_dag(build_dag(parse_pipeline_text(PIPELINE, "/pipelines/request_parameters.yaml")))
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    [chat] = _bodies(llmock, "/chat/completions")
    assert (chat["repetition_penalty"], chat["top_k"]) == (1.1, 40)
    assert (chat["seed"], chat["presence_penalty"], chat["frequency_penalty"]) == (7, 0.5, -0.25)
    assert "extra_body" not in chat  # merged into the body, as the SDK does, not sent as a key
    [embedding] = _bodies(llmock, "/embeddings")
    assert embedding["truncate"] is True

"""`{{ steps.<id>.content / .response / .embeddings }}` at run time, next to Airflow's own names."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from conftest import run_dag, task_states

from ovh_ai_dagfactory.compat import AirflowException, AirflowFailException
from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.factory.step_outputs import StepOutputs
from ovh_ai_dagfactory.spec.parse import parse_pipeline_text

PIPELINE = """\
dag_id: step_outputs_in_templates
start_date: 2024-01-01
params: {topic: airflow}
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: "Tell me about {{ params.topic }} on {{ ds }}"}]
  embed:
    type: embedding
    model: BGE-M3
    input: ["{{ steps.ask.content }}", "second"]
  report:
    type: chat
    model: "{{ steps.ask.response.model }}"
    messages:
      - role: user
        content: >-
          vectors={{ steps.embed.embeddings | length }} dim={{ steps.embed.embeddings[0] | length }}
          id={{ ti.xcom_pull(task_ids='ask')['id'] == steps['ask'].response.id }}
          answer={{ steps.ask.content }}
"""


def test_outputs_reach_later_steps(airflow_db, ovh_connection, llmock):
    dag = build_dag(parse_pipeline_text(PIPELINE, "/p/step_outputs_in_templates.yaml"))
    assert dag.get_task("report").upstream_task_ids == {"ask", "embed"}
    llmock.reply("Airflow orchestrates.")
    dag_run = run_dag(dag, logical_date=datetime(2024, 5, 6, tzinfo=timezone.utc))
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    chats = [r.body for r in llmock.requests if r.path.endswith("/chat/completions")]
    [embedding] = [r.body for r in llmock.requests if r.path.endswith("/embeddings")]
    assert chats[0]["messages"][0]["content"] == "Tell me about airflow on 2024-05-06"
    assert embedding["input"] == ["Airflow orchestrates.", "second"]
    assert chats[1]["model"] == "Meta-Llama-3_3-70B-Instruct"  # from steps.ask.response.model
    content = chats[1]["messages"][0]["content"]
    assert "vectors=2 dim=" in content and "id=True" in content and "answer=Airflow orchestrates." in content
    dim = int(content.split("dim=")[1].split()[0])
    assert dim > 0


class _RecordingTI:
    """A task instance stand-in that only knows XCom: what StepOutputs reads."""

    def __init__(self, values):
        self.values = values
        self.pulls = []

    def xcom_pull(self, task_ids):
        self.pulls.append(task_ids)
        return self.values.get(task_ids)


CHAT = {"id": "c1", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
VECTORS = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}


def test_outputs_are_pulled_lazily_and_once():
    ti = _RecordingTI({"a": CHAT, "e": VECTORS})
    steps = StepOutputs(ti, {"a": "chat", "e": "embedding", "unused": "chat"})
    assert steps.a.content == "hi" and steps["a"].response["id"] == "c1"
    assert steps.e.embeddings == [[1.0], [2.0]]  # in input order
    assert ti.pulls == ["a", "e"]


def test_wrong_output_unknown_step_and_missing_result_fail_clearly():
    steps = StepOutputs(_RecordingTI({"e": VECTORS}), {"a": "chat", "e": "embedding"})
    with pytest.raises(AirflowFailException, match="'e' is an embedding step; it provides embeddings and response"):
        steps.e.content
    with pytest.raises(AirflowFailException, match="no step 'zzz'"):
        steps.zzz
    with pytest.raises(AirflowException, match="has no result in XCom yet"):
        steps.a.content
    with pytest.raises(AirflowFailException, match="needs an output"):
        str(steps.a)


@pytest.mark.parametrize(
    ("message", "finish_reason", "shown"),
    [
        ({"role": "assistant", "content": None}, "length", "content null"),
        ({"role": "assistant", "content": ""}, "stop", "empty content"),
        ({"role": "assistant", "content": "  \n"}, "stop", "empty content"),
        ({"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]}, "tool_calls", "tool calls only"),
    ],
)
def test_content_refuses_an_answer_without_text_instead_of_rendering_none(message, finish_reason, shown):
    response = {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}
    steps = StepOutputs(_RecordingTI({"a": response}), {"a": "chat"})
    with pytest.raises(AirflowFailException) as caught:
        steps.a.content
    assert str(caught.value).startswith("steps.a.content: step 'a' returned no text")
    assert shown in str(caught.value) and f"finish_reason='{finish_reason}'" in str(caught.value)


@pytest.mark.parametrize(
    ("response", "words"),
    [
        ({"choices": []}, "returned an empty 'choices' list"),
        ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "returned no message"),
        ({"object": "list", "data": []}, "returned an empty 'choices' list"),
    ],
)
def test_content_refuses_a_response_without_a_first_choice(response, words):
    steps = StepOutputs(_RecordingTI({"a": response}), {"a": "chat"})
    with pytest.raises(AirflowFailException) as caught:
        steps.a.content
    assert str(caught.value).startswith("steps.a.content: ") and words in str(caught.value)


@pytest.mark.parametrize(
    ("response", "words"),
    [
        ({"data": []}, "returned an empty 'data' list"),
        ({"data": [{"index": 0, "embedding": []}]}, "no vector in data[0]"),
        ({"data": [{"index": 0, "embedding": None}]}, "no vector in data[0]"),
        ({"data": [{"index": 0}]}, "no vector in data[0]"),
        ({"choices": []}, "returned no 'data'"),
    ],
)
def test_embeddings_refuse_missing_or_empty_vectors(response, words):
    steps = StepOutputs(_RecordingTI({"e": response}), {"e": "embedding"})
    with pytest.raises(AirflowFailException) as caught:
        steps.e.embeddings
    assert str(caught.value).startswith("steps.e.embeddings: ") and words in str(caught.value)

"""Answers without a result, and answers echoing the token, through Airflow itself (`dag.test()`):
what reaches XCom, the task log and the task's state; then every kind of "no result" through the
operators' execute(). Each task uses its own model so that the stub's scripted answers cannot be
consumed by another task.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from ovh_stub import ECHO_AUTHORIZATION

from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)
from provider.conftest import dag_id
from provider.shared import TEST_TOKEN, run_dag, task_states, xcom_value

pytestmark = pytest.mark.usefixtures("airflow_db", "stub_connection")

HI = [{"role": "user", "content": "hi"}]


def chat_answer(model, content, finish_reason="stop", **message):
    return {
        "id": f"chatcmpl-{model}",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chat_task(task_id, model, **kwargs):
    return OVHCloudAIEndpointsChatCompletionsOperator(
        task_id=task_id, model=model, messages=HI, retries=2, retry_delay=timedelta(seconds=0), **kwargs
    )


def test_an_echoed_token_never_reaches_xcom_or_the_log_and_empty_answers_fail_the_task(ovh_stub, capfd, caplog):
    ovh_stub.respond(
        200,
        model="gpt-oss-120b",
        body=chat_answer("gpt-oss-120b", f"I saw {ECHO_AUTHORIZATION}", debug={"authorization": ECHO_AUTHORIZATION}),
    )
    ovh_stub.respond(
        200,
        model="Mixtral-8x22B-Instruct-v0.1",
        times=5,
        body=chat_answer("Mixtral-8x22B-Instruct-v0.1", None, "length"),
    )
    ovh_stub.respond(
        200,
        model="Meta-Llama-3_3-70B-Instruct",
        times=5,
        body=chat_answer(
            "Meta-Llama-3_3-70B-Instruct",
            None,
            "tool_calls",
            tool_calls=[{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
        ),
    )
    one_vector = {
        "object": "list",
        "model": "BGE-M3",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
    }
    ovh_stub.respond(200, model="BGE-M3", times=5, body=one_vector)
    with DAG(dag_id=dag_id("unusable_answers"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _chat_task("echo", "gpt-oss-120b")
        _chat_task("null_content", "Mixtral-8x22B-Instruct-v0.1", max_tokens=16)
        _chat_task("tool_calls_only", "Meta-Llama-3_3-70B-Instruct")
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="too_few_vectors", model="BGE-M3", input=["a", "b"], retries=2, retry_delay=timedelta(seconds=0)
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {
        "echo": "success",
        "null_content": "failed",
        "tool_calls_only": "failed",
        "too_few_vectors": "failed",
    }
    # NoContentError is fatal: one try, one request each, although every task has retries=2.
    assert all(ti.try_number == 1 for ti in dag_run.get_task_instances())
    posts = [r.body["model"] for r in ovh_stub.requests if r.method == "POST"]
    models = ["gpt-oss-120b", "Mixtral-8x22B-Instruct-v0.1", "Meta-Llama-3_3-70B-Instruct", "BGE-M3"]
    assert sorted(posts) == sorted(models)
    assert f"Bearer {TEST_TOKEN}" in [r.headers["authorization"] for r in ovh_stub.requests]  # the echo was real

    echoed = xcom_value(dag_run, "echo")
    assert echoed["choices"][0]["message"]["content"] == "I saw Bearer ***"
    assert echoed["choices"][0]["message"]["debug"] == {"authorization": "Bearer ***"}
    for task_id in ("null_content", "tool_calls_only", "too_few_vectors"):
        assert xcom_value(dag_run, task_id) is None, task_id  # nothing pushed, so nothing renders "None"

    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert TEST_TOKEN not in logs + json.dumps(echoed)
    assert (
        "No content: chat completion of model 'Mixtral-8x22B-Instruct-v0.1' returned content null "
        "(finish_reason='length'"
    ) in logs
    assert "reached max_tokens (16)" in logs
    assert "model 'Meta-Llama-3_3-70B-Instruct' returned tool calls only (lookup)" in logs
    assert "No vectors: embedding of model 'BGE-M3' returned 1 vector(s) with indexes [0] for 2 input(s)" in logs


# -- every kind of "no result", through the operators' execute() (same stages, no scheduler) -----


@pytest.mark.parametrize(
    ("answer", "returned", "hint"),
    [
        ({"id": "c", "object": "chat.completion", "choices": []}, "an empty 'choices' list", "no answer at all"),
        ({"id": "c", "choices": [{"index": 0, "finish_reason": "stop"}]}, "no message", "Check the prompt"),
        (chat_answer("m", ""), "empty content", "Check the prompt"),
        (chat_answer("m", " \n "), "empty content", "Check the prompt"),
        (chat_answer("m", None, "content_filter"), "content null", "content filter withheld"),
        (chat_answer("m", None, refusal="I cannot help."), "a refusal ('I cannot help.')", "Rephrase"),
    ],
)
def test_the_chat_operator_refuses_every_answer_without_text(ovh_stub, answer, returned, hint):
    from ovh_ai_dagfactory.calls.errors import NoContentError

    ovh_stub.respond(200, body=answer)
    operator = OVHCloudAIEndpointsChatCompletionsOperator(task_id="t", model="gpt-oss-120b", messages=HI)
    with pytest.raises(NoContentError) as caught:
        operator.execute({})
    message = str(caught.value)
    assert message.startswith(f"No content: chat completion of model 'gpt-oss-120b' returned {returned} (finish_")
    assert hint in message and "instead of passing an empty answer" in message
    assert caught.value.finish_reason == (answer["choices"][0].get("finish_reason") if answer["choices"] else None)


@pytest.mark.parametrize(
    ("data", "inputs", "returned"),
    [
        ([], ["a"], "an empty 'data' list"),
        ([{"index": 0}], "a", "no vector in data[0]"),
        ([{"index": 0, "embedding": []}, {"index": 1}], ["a", "b"], "no vector in data[0] and 1 more"),
        ([{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}], ["a", "b"], "indexes [0] for 2 input"),
        ([{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": [0.2]}], "a", "2 vector(s) with indexes [0, 1]"),
    ],
)
def test_the_embedding_operator_refuses_anything_but_one_vector_per_input(ovh_stub, data, inputs, returned):
    from ovh_ai_dagfactory.calls.errors import NoContentError

    ovh_stub.respond(200, body={"object": "list", "model": "BGE-M3", "data": data})
    operator = OVHCloudAIEndpointsEmbeddingOperator(task_id="t", model="BGE-M3", input=inputs)
    with pytest.raises(NoContentError, match=r"^No vectors: embedding of model 'BGE-M3' returned ") as caught:
        operator.execute({})
    assert returned in str(caught.value)


def test_the_operators_accept_answers_with_their_result(ovh_stub):
    ovh_stub.respond(
        200, body={"object": "list", "data": [{"index": 1, "embedding": [0.2]}, {"index": 0, "embedding": [0.1]}]}
    )
    vectors = OVHCloudAIEndpointsEmbeddingOperator(task_id="e", model="BGE-M3", input=["a", "b"]).execute({})
    assert [item["index"] for item in vectors["data"]] == [1, 0]  # out of order is fine, the wire JSON is kept
    answer = OVHCloudAIEndpointsChatCompletionsOperator(task_id="c", model="gpt-oss-120b", messages=HI).execute({})
    assert answer["choices"][0]["message"]["content"] == "Echo from gpt-oss-120b: hi"

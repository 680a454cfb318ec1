"""OVHCloudAIEndpointsBatchOperator through Airflow (`dag.test()`, which runs a deferred task's trigger
in line on 3.x and 2.11) against the batch stub over real HTTP on 127.0.0.1: the JSONL uploaded, the
status progression, results mapped back to input order from shuffled output lines, the XCom shapes
of the synchronous operators, failed lines under both policies, expired / failed / cancelled batches,
the non-deferrable mode, an anonymous connection, and the token kept out of logs, XCom and the file.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from ovh_stub import _embeddings

from ovh_ai_dagfactory.batch_api.errors import (
    BatchAnonymousError,
    BatchCancelledError,
    BatchExpiredError,
    BatchFailedError,
    BatchLinesFailedError,
    BatchLinesRefusedError,
)
from ovh_ai_dagfactory.calls.errors import InvalidRequestError, OVHCloudAIEndpointsFatalError
from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.operators.batch import OVHCloudAIEndpointsBatchOperator
from provider import batch_fixtures
from provider.batch_fixtures import Failures, dumped, logs_of
from provider.conftest import dag_id, set_env_connection
from provider.shared import TEST_TOKEN, run_dag, task_states, xcom_value

batch_stub_server = batch_fixtures.batch_stub_server
batch_stub = batch_fixtures.batch_stub
MODEL = "Meta-Llama-3_3-70B-Instruct"
QUESTIONS = [f"question number {i}" for i in range(7)]
TEXTS = [f"document {i} about batches" for i in range(6)]


def _chat_inputs(questions=QUESTIONS):
    return [[{"role": "user", "content": q}] for q in questions]


def _run(name, failures=None, **kwargs):
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("max_poll_interval", 0.05)
    with DAG(dag_id=dag_id(name), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsBatchOperator(task_id="batch", on_failure_callback=failures, **kwargs)
    return run_dag(dag)


def _chat(name, failures=None, **kwargs):
    kwargs.setdefault("inputs", _chat_inputs())
    return _run(name, failures, kind="chat", model=MODEL, **kwargs)


def _async_polls(stub):
    """Polls of a batch made by the async openai client (the trigger's), told by the SDK's header."""
    polls = [r for r in stub.requests if r.method == "GET" and "/batches/" in r.path]
    return [r for r in polls if r.headers.get("x-stainless-async", "false") != "false"]


def _posts(stub, route):
    return [r for r in stub.requests if r.method == "POST" and r.path.endswith(route)]


def test_chat_batch_defers_polls_to_completed_and_returns_responses_in_input_order(
    airflow_db, batch_stub, capfd, caplog
):
    dag_run = _chat("batch_chat", max_tokens=64)

    assert task_states(dag_run) == {"batch": "success"}
    responses = xcom_value(dag_run, "batch")
    assert [r["choices"][0]["message"]["content"] for r in responses] == [f"Echo from {MODEL}: {q}" for q in QUESTIONS]
    assert all(r["object"] == "chat.completion" for r in responses)
    # The upload: one line per input, custom_id = the index, purpose batch, the request parameters.
    upload = batch_stub.uploads[-1]
    lines = [json.loads(line) for line in upload["content"].splitlines()]
    assert upload["purpose"] == "batch"
    assert [line["custom_id"] for line in lines] == [str(i) for i in range(len(QUESTIONS))]
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert lines[3]["body"] == {"model": MODEL, "messages": _chat_inputs()[3], "max_tokens": 64}
    assert _posts(batch_stub, "/batches")[0].body["completion_window"] == "24h"
    # The stub wrote the output lines shuffled: the mapping did the ordering, not the file.
    output = batch_stub.files[batch_stub.batches["batch_0001"]["output_file_id"]]["content"]
    assert [json.loads(line)["custom_id"] for line in output.splitlines()] != [str(i) for i in range(len(QUESTIONS))]
    # validating -> in_progress -> finalizing -> completed, one poll each, from the trigger.
    polls = [r for r in batch_stub.requests if r.method == "GET" and r.path.endswith("/batches/batch_0001")]
    assert len(polls) == 3
    assert xcom_value(dag_run, "batch", "batch_id") == "batch_0001"
    assert xcom_value(dag_run, "batch", "batch")["request_counts"] == {"total": 7, "completed": 7, "failed": 0}
    logs = logs_of(capfd, caplog)
    assert len(_async_polls(batch_stub)) == 3  # the trigger polled, not the worker
    # The token: in no log, no XCom, not in the uploaded file's name or content.
    assert TEST_TOKEN not in logs
    assert TEST_TOKEN not in dumped([responses, xcom_value(dag_run, "batch", "batch")])
    assert TEST_TOKEN not in upload["filename"] + upload["content"]
    assert upload["filename"].startswith(dag_run.dag_id + "__batch__")
    assert upload["filename"].endswith(".jsonl")


def test_embedding_batch_returns_one_embeddings_response_indexed_by_input(airflow_db, batch_stub):
    ids = [f"doc-{i}" for i in range(len(TEXTS))]
    dag_run = _run("batch_embed", kind="embedding", model="BGE-M3", inputs=TEXTS, custom_ids=ids)

    assert task_states(dag_run) == {"batch": "success"}
    response = xcom_value(dag_run, "batch")
    expected = _embeddings("BGE-M3", TEXTS)
    assert response["object"] == "list" and response["model"] == "BGE-M3"
    assert [item["index"] for item in response["data"]] == list(range(len(TEXTS)))
    assert [item["embedding"] for item in response["data"]] == [item["embedding"] for item in expected["data"]]
    assert response["usage"]["total_tokens"] == expected["usage"]["total_tokens"]
    lines = [json.loads(line) for line in batch_stub.uploads[-1]["content"].splitlines()]
    assert [line["custom_id"] for line in lines] == ids
    assert lines[0]["body"] == {"model": "BGE-M3", "input": TEXTS[0], "encoding_format": "float"}
    assert {line["url"] for line in lines} == {"/v1/embeddings"}


def test_non_deferrable_mode_polls_in_the_worker(airflow_db, batch_stub):
    batch_stub.polls_per_status = 2
    dag_run = _chat("batch_sync_wait", deferrable=False, completion_window="72h")

    assert task_states(dag_run) == {"batch": "success"}
    assert len(xcom_value(dag_run, "batch")) == len(QUESTIONS)
    polls = [r for r in batch_stub.requests if r.method == "GET" and "/batches/" in r.path]
    assert len(polls) == 6  # validating (the 2nd; creation showed the 1st), in_progress x2, finalizing x2, completed
    assert _posts(batch_stub, "/batches")[0].body["completion_window"] == "72h"
    assert _async_polls(batch_stub) == []


@pytest.mark.parametrize(
    ("ending", "error", "words"),
    [
        ("expired", BatchExpiredError, "completion window"),
        ("failed", BatchFailedError, "Model not available for batch (line 1)"),
        ("cancelled", BatchCancelledError, "was cancelled"),
    ],
)
@pytest.mark.parametrize("deferrable", [True, False])
def test_a_batch_that_does_not_complete_fails_the_task_with_its_own_error(
    airflow_db, batch_stub, ending, error, words, deferrable
):
    batch_stub.end_next_batch_as(ending)
    failures = Failures()
    dag_run = _chat(f"batch_{ending}", failures, deferrable=deferrable)

    assert task_states(dag_run) == {"batch": "failed"}
    raised = failures.by_task["batch"]
    assert type(raised) is error, raised
    assert "batch_0001" in str(raised) and words in str(raised)
    assert isinstance(raised, OVHCloudAIEndpointsFatalError) == (ending != "expired")
    assert xcom_value(dag_run, "batch", "batch")["status"] == ending
    assert not [r for r in batch_stub.requests if "/content" in r.path]  # nothing to download


def test_failed_lines_fail_the_task_by_default_naming_the_first(airflow_db, batch_stub):
    batch_stub.fail_lines({2: 400, 5: 422})
    failures = Failures()
    dag_run = _chat("batch_lines_fail", failures)

    assert task_states(dag_run) == {"batch": "failed"}
    raised = failures.by_task["batch"]
    assert type(raised) is BatchLinesRefusedError  # every failure is a 4xx: retrying would not help
    assert "2 of 7 request line(s) failed" in str(raised) and "line 2 (custom_id '2', status 400)" in str(raised)
    assert [f["index"] for f in raised.failed] == [2, 5] and raised.failed_count == 2


def test_a_server_error_on_a_line_is_worth_a_retry(airflow_db, batch_stub):
    batch_stub.fail_lines({1: 500}, in_output=True)
    failures = Failures()
    _chat("batch_lines_5xx", failures)

    raised = failures.by_task["batch"]
    assert type(raised) is BatchLinesFailedError and not isinstance(raised, OVHCloudAIEndpointsFatalError)


def test_report_keeps_the_successes_and_pushes_the_failures(airflow_db, batch_stub, capfd, caplog):
    batch_stub.fail_lines({1: 400}).drop_lines({4})
    dag_run = _chat("batch_lines_report", on_line_error="report")

    assert task_states(dag_run) == {"batch": "success"}
    responses = xcom_value(dag_run, "batch")
    assert [r is None for r in responses] == [i in (1, 4) for i in range(len(QUESTIONS))]
    assert responses[6]["choices"][0]["message"]["content"] == f"Echo from {MODEL}: {QUESTIONS[6]}"
    failed = xcom_value(dag_run, "batch", "failed")
    assert [(f["index"], f["custom_id"], f["status_code"]) for f in failed] == [(1, "1", 400), (4, "4", None)]
    assert "refused by the stub" in failed[0]["error"] and "no line" in failed[1]["error"]
    assert "Batch results: 5 succeeded, 2 failed" in logs_of(capfd, caplog)


def test_report_on_embeddings_leaves_the_failed_index_out_of_data(airflow_db, batch_stub):
    batch_stub.fail_lines({0: 400})
    dag_run = _run("batch_embed_report", kind="embedding", model="BGE-M3", inputs=TEXTS, on_line_error="report")

    response = xcom_value(dag_run, "batch")
    assert [item["index"] for item in response["data"]] == [1, 2, 3, 4, 5]
    assert xcom_value(dag_run, "batch", "failed")[0]["index"] == 0


def test_an_unknown_model_fails_every_line_with_the_routes_404(airflow_db, batch_stub):
    failures = Failures()
    _run("batch_bad_model", failures, kind="chat", model="no-such-model", inputs=_chat_inputs()[:2])

    raised = failures.by_task["batch"]
    assert type(raised) is BatchLinesRefusedError and "does not exist" in str(raised)


def test_an_anonymous_connection_is_refused_before_anything_is_uploaded(airflow_db, batch_stub, monkeypatch):
    conn = {"conn_type": "ovhcloud_ai_endpoints", "host": batch_stub.base_url, "extra": {"anonymous": True}}
    set_env_connection(monkeypatch, conn)
    failures = Failures()
    dag_run = _chat("batch_anonymous", failures)

    assert task_states(dag_run) == {"batch": "failed"}
    assert type(failures.by_task["batch"]) is BatchAnonymousError
    assert "refuses anonymous batch jobs" in str(failures.by_task["batch"])
    assert batch_stub.requests == []


def test_an_empty_input_list_submits_nothing(airflow_db, batch_stub):
    dag_run = _chat("batch_empty", inputs=[])

    assert task_states(dag_run) == {"batch": "success"}
    assert xcom_value(dag_run, "batch") == []
    assert batch_stub.requests == []


def test_arguments_are_checked_when_the_dag_is_built():
    common = {"task_id": "t", "model": MODEL, "inputs": []}
    with pytest.raises(InvalidRequestError, match="completion_window must be one of 24h, 48h, 72h"):
        OVHCloudAIEndpointsBatchOperator(kind="chat", completion_window="12h", **common)
    with pytest.raises(InvalidRequestError, match="kind must be"):
        OVHCloudAIEndpointsBatchOperator(kind="completion", **common)
    with pytest.raises(InvalidRequestError, match="on_line_error"):
        OVHCloudAIEndpointsBatchOperator(kind="chat", on_line_error="ignore", **common)
    with pytest.raises(InvalidRequestError, match="for kind='chat'"):
        OVHCloudAIEndpointsBatchOperator(kind="embedding", temperature=0.2, **common)
    with pytest.raises(InvalidRequestError, match="takes as its own argument"):
        OVHCloudAIEndpointsBatchOperator(kind="chat", request_kwargs={"temperature": 0.1}, **common)


def test_call_options_and_bad_inputs_are_refused_before_the_upload(airflow_db, batch_stub):
    failures = Failures()
    _chat("batch_headers", failures, request_kwargs={"extra_headers": {"x": "1"}})
    assert "cannot be sent in a batch" in str(failures.by_task["batch"])
    _chat("batch_bad_input", failures, inputs=[[{"role": "user", "content": "ok"}], "not a message list"])
    assert "batch input [1] must be a non-empty list of messages" in str(failures.by_task["batch"])
    assert not [r for r in batch_stub.requests if r.path.endswith("/files")]

"""Embeddings at volume (issue 10), provider level: a large `input` split into requests of at most
`batch_size` texts under the 2 MB body limit, run concurrently, paced, paused together on 429,
retried per batch, and reassembled in input order. Over real HTTP to the OVH-like stub
(tests/ovh_stub.py), through Airflow where the operator is concerned.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from ovh_stub import _embeddings

from ovh_ai_dagfactory.calls.errors import InvalidRequestError, RequestRejectedError, ServerError
from ovh_ai_dagfactory.compat import DAG, AirflowFailException
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.jobs.batches import split_batches
from ovh_ai_dagfactory.jobs.embeddings import EmbeddingsTooLargeError, TextRefusedError
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsEmbeddingOperator
from provider.conftest import dag_id
from provider.shared import TEST_TOKEN, run_dag, task_states, xcom_value

pytestmark = pytest.mark.usefixtures("stub_connection")

TEXTS = [f"document number {i} about airflow" for i in range(10)]


def _posts(stub):
    return [r for r in stub.requests if r.method == "POST" and r.path.endswith("/embeddings")]


def _expected_vectors(texts, model="BGE-M3"):
    return [item["embedding"] for item in _embeddings(model, texts)["data"]]


def _logs(capfd, caplog):
    out, err = capfd.readouterr()
    return out + err + caplog.text


def _embed(task_id="embed", **kwargs):
    kwargs.setdefault("input", TEXTS)
    return OVHCloudAIEndpointsEmbeddingOperator(task_id=task_id, model="BGE-M3", **kwargs)


# -- through Airflow ---------------------------------------------------------------------------


def test_batches_finishing_out_of_order_come_back_in_input_order(airflow_db, ovh_stub, capfd, caplog):
    ovh_stub.delay(0.5, containing=TEXTS[0])  # the first batch (texts 0-2) is answered last
    with DAG(dag_id=dag_id("embed_order"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _embed(batch_size=3, max_concurrency=4, requests_per_minute=None)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed": "success"}
    posts = _posts(ovh_stub)
    assert sorted(len(r.body["input"]) for r in posts) == [1, 3, 3, 3]
    assert sorted(r.body["input"][0] for r in posts) == sorted(TEXTS[i] for i in (0, 3, 6, 9))
    first = next(r for r in posts if r.body["input"][0] == TEXTS[0])
    assert all(first.answered_at > r.answered_at for r in posts if r is not first)  # really out of order

    response = xcom_value(dag_run, "embed")
    assert [d["index"] for d in response["data"]] == list(range(10))
    assert [d["embedding"] for d in response["data"]] == _expected_vectors(TEXTS)
    assert response["object"] == "list" and response["model"] == "BGE-M3"
    tokens = sum(len(t.split()) for t in TEXTS)
    assert response["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    logs = _logs(capfd, caplog)
    assert "Embedding done: 10/10 texts (100.0%), 4 requests, " + f"{tokens} tokens" in logs
    assert "0 retries, 0 rate-limited (429)" in logs
    assert TEST_TOKEN not in logs and TEST_TOKEN not in json.dumps(response)


def test_an_input_of_batch_size_texts_is_one_request_as_before(airflow_db, ovh_stub):
    with DAG(dag_id=dag_id("embed_one_request"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _embed("exactly", batch_size=10)
        _embed("one_more", input=[*TEXTS, "one more"], batch_size=10)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"exactly": "success", "one_more": "success"}
    bodies = [r.body for r in _posts(ovh_stub)]
    assert {"model": "BGE-M3", "input": TEXTS, "encoding_format": "float"} in bodies
    assert sorted(len(b["input"]) for b in bodies) == [1, 10, 10]
    assert len(xcom_value(dag_run, "one_more")["data"]) == 11


def test_a_429_storm_pauses_every_request_for_the_retry_after_then_resumes_one_by_one(
    airflow_db, ovh_stub, capfd, caplog
):
    # The first four requests are answered 429 with a 0.5 s Retry-After.
    ovh_stub.fail(429, body={"message": "Too many requests"}, headers={"retry-after-ms": "500"}, times=4)
    with DAG(dag_id=dag_id("embed_429"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _embed(batch_size=2, max_concurrency=4, requests_per_minute=None)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed": "success"}
    posts = _posts(ovh_stub)
    limited = [r for r in posts if r.status == 429]
    assert len(limited) == 4 and len(posts) == 9
    # The pause is shared: once a 429 is answered, no worker sends anything until its Retry-After
    # has passed (50 ms of grace for a request already on its way).
    for refused in limited:
        assert not [r for r in posts if refused.answered_at + 0.05 < r.at < refused.answered_at + 0.45]
    # After the last pause the starts are spaced until one succeeds: no thundering herd.
    resumed = sorted(r.at for r in posts if r.at > max(r.answered_at for r in limited))
    assert len(resumed) >= 2 and resumed[1] - resumed[0] >= 0.05
    assert [d["index"] for d in xcom_value(dag_run, "embed")["data"]] == list(range(10))
    logs = _logs(capfd, caplog)
    assert "Embedding done: 10/10 texts (100.0%), 9 requests, " in logs
    assert "0 retries, 4 rate-limited (429), " in logs and " s paused" in logs


def test_a_failed_batch_is_retried_alone_and_a_lasting_failure_names_its_batch(airflow_db, ovh_stub, capfd, caplog):
    ovh_stub.fail(503, body={"message": "upstream busy"}, times=1)
    with DAG(dag_id=dag_id("embed_retry"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _embed(batch_size=5, max_concurrency=1, requests_per_minute=None)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed": "success"}
    statuses = [r.status for r in _posts(ovh_stub)]
    assert statuses == [503, 200, 200]  # the first batch again, then the second: nothing re-sent twice
    assert [d["embedding"] for d in xcom_value(dag_run, "embed")["data"]] == _expected_vectors(TEXTS)
    logs = _logs(capfd, caplog)
    assert "Embedding done: 10/10 texts (100.0%), 3 requests, " in logs and ", 1 retries, " in logs

    ovh_stub.reset()
    ovh_stub.fail(503, body={"message": "upstream down"}, times=10)
    with pytest.raises(ServerError) as caught:
        OVHCloudAIEndpointsHook(max_retries=1).embed_texts(
            "BGE-M3", TEXTS, batch_size=5, max_concurrency=1, requests_per_minute=None
        )
    message = str(caught.value)
    assert message.startswith("503 Server Error: embedding on ")
    assert message.endswith("[embedding batch 0 (texts 0-4), after 1 retries of that request]")
    assert caught.value.http_status == 503
    assert len(_posts(ovh_stub)) == 2  # one try and one retry of batch 0; batch 1 never started


def test_a_text_over_the_model_limit_fails_the_task_naming_its_index(airflow_db, ovh_stub, capfd, caplog):
    ovh_stub.max_input_tokens = 8
    texts = [*TEXTS[:7], "far too long " * 5, *TEXTS[8:]]
    with DAG(dag_id=dag_id("embed_too_long"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _embed(input=texts, batch_size=8, max_concurrency=2, retries=2, retry_delay=timedelta(seconds=0))
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed": "failed"}
    assert [ti.try_number for ti in dag_run.get_task_instances()] == [1]  # fatal: no task retries
    logs = _logs(capfd, caplog)
    assert "TextRefusedError" in logs
    assert (
        "Text refused: text 7 of the embedding input (65 characters, 15 words) is refused by the endpoint "
        "when sent alone"
    ) in logs
    assert "This model's maximum context length is 8 tokens. However, you requested 15 tokens" in logs
    # Narrowed down by halves: 8, then 4 + 4, 2 + 2, 1 + 1 (batch 0), plus batch 1 (texts 8-9).
    sizes = sorted(len(r.body["input"]) for r in _posts(ovh_stub))
    assert sizes == [1, 1, 2, 2, 2, 4, 4, 8]


def test_texts_are_split_under_the_body_limit_that_one_request_would_exceed(ovh_stub):
    ovh_stub.max_body_bytes = 2_000_000
    texts = [f"{i} " + "word " * 60_000 for i in range(10)]  # 300 kB each, 3 MB together
    hook = OVHCloudAIEndpointsHook()
    with pytest.raises(RequestRejectedError) as caught:  # today's single request
        hook.create_embedding("BGE-M3", texts)
    assert caught.value.http_status == 413

    ovh_stub.reset()
    ovh_stub.max_body_bytes = 2_000_000
    response = hook.embed_texts("BGE-M3", texts, requests_per_minute=None)
    posts = _posts(ovh_stub)
    assert [r.status for r in posts] == [200] * len(posts) and len(posts) == 2
    assert sum(len(r.body["input"]) for r in posts) == 10
    assert [d["embedding"] for d in response["data"]] == _expected_vectors(texts)


def test_requests_are_paced_to_requests_per_minute(ovh_stub):
    OVHCloudAIEndpointsHook().embed_texts("BGE-M3", TEXTS, batch_size=2, max_concurrency=4, requests_per_minute=600)
    starts = sorted(r.at for r in _posts(ovh_stub))
    assert len(starts) == 5
    # 600/min: one start every 0.1 s, so five starts span 0.4 s; unpaced, four would start at once and
    # the fifth as soon as one answered (a few ms). Judged on the span: a busy machine delays single
    # arrivals, not the pacing.
    assert starts[-1] - starts[0] >= 0.35


def test_a_result_too_large_for_xcom_fails_after_the_first_batch(airflow_db, ovh_stub, capfd, caplog):
    with DAG(dag_id=dag_id("embed_too_big"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _embed(input=TEXTS * 10, batch_size=10, max_concurrency=1, max_xcom_bytes=200_000)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed": "failed"}
    assert len(_posts(ovh_stub)) == 1  # the rest is never paid for
    logs = _logs(capfd, caplog)
    assert "EmbeddingsTooLargeError" in logs
    assert "Embeddings too large for XCom: 100 vectors of 1,024 dimensions are about " in logs
    assert "over the limit of 0.2 MB (max_xcom_bytes). Set `output` to a directory URI" in logs


def test_batching_arguments_are_refused_in_embedding_kwargs():
    with pytest.raises(InvalidRequestError, match="embedding_kwargs sets 'batch_size', which the operator takes"):
        _embed(embedding_kwargs={"batch_size": 8})
    with pytest.raises(InvalidRequestError, match="batch_size must be a whole number ≥ 1, not 0"):
        _embed(batch_size=0)


def test_errors_are_rebuilt_with_their_class_and_attributes():
    error = TextRefusedError("Text refused: text 7", text_index=7, text_id="doc-7", http_status=400)
    path, args, kwargs = error.serialize()
    assert path == "ovh_ai_dagfactory.jobs.embeddings.TextRefusedError"
    again = TextRefusedError(*args, **kwargs)
    assert (str(again), again.text_index, again.text_id, again.http_status) == (str(error), 7, "doc-7", 400)
    assert isinstance(EmbeddingsTooLargeError("x"), AirflowFailException)  # fatal: no task retries
    assert isinstance(error, AirflowFailException)


# -- the split itself ---------------------------------------------------------------------------


def test_split_keeps_every_text_once_in_order_under_both_limits():
    texts = [("x" * (i % 7) * 1000) for i in range(50)]
    batches = list(split_batches(((None, t) for t in texts), batch_size=8, max_request_bytes=20_000, envelope=100))
    assert [t for b in batches for t in b.texts] == texts
    assert [b.start for b in batches] == [sum(len(p.texts) for p in batches[:i]) for i in range(len(batches))]
    assert [b.number for b in batches] == list(range(len(batches)))
    assert all(len(b.texts) <= 8 and sum(len(json.dumps(t)) + 1 for t in b.texts) <= 19_900 for b in batches)
    assert all(b.ids is None for b in batches)


def test_split_names_a_text_too_large_alone_by_index_and_id():
    items = [("a", "short"), ("doc-9", "é" * 400_000)]
    with pytest.raises(InvalidRequestError) as caught:
        list(split_batches(items, batch_size=8, max_request_bytes=2_000_000))
    assert str(caught.value).startswith(
        "Invalid request: text 1 (id 'doc-9') is 2,400,003 bytes in a request body, over the endpoint's limit "
        "of 2,000,000 bytes (max_request_bytes) on its own."
    )

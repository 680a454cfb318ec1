"""The seed's error table, produced for real by a server on 127.0.0.1, and the retry policy:
4xx fail the task at once (no Airflow retry), 429/5xx/timeouts are retried by the SDK with backoff.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from ovh_stub import ECHO_AUTHORIZATION

from ovh_ai_dagfactory.calls import errors
from ovh_ai_dagfactory.compat import DAG, AirflowException, AirflowFailException
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator
from provider.conftest import dag_id, set_env_connection
from provider.shared import CONN_ID, TEST_TOKEN, run_dag, task_states

HI = [{"role": "user", "content": "hi"}]


def _chat(hook=None, model="Meta-Llama-3_3-70B-Instruct"):
    return (hook or OVHCloudAIEndpointsHook()).chat_completion(model=model, messages=HI)


def _posts(records):
    return [r for r in records if r.method == "POST"]


# -- API key not found ---------------------------------------------------------------------------


def test_api_key_not_found_names_the_connection_and_how_to_set_it(ovh_stub, monkeypatch):
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": ovh_stub.base_url})
    with pytest.raises(errors.ApiKeyNotFoundError) as caught:
        _chat()
    message = str(caught.value)
    assert message.startswith("API key not found")
    assert f"'{CONN_ID}'" in message
    assert f"airflow connections add {CONN_ID}" in message and "--conn-password" in message
    assert f"AIRFLOW_CONN_{CONN_ID.upper()}" in message
    assert isinstance(caught.value, AirflowFailException)
    assert ovh_stub.requests == []  # failed before any call


def test_api_key_not_found_when_the_connection_does_not_exist(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_OVH_NOWHERE", raising=False)
    with pytest.raises(errors.ApiKeyNotFoundError, match=r"^API key not found: connection 'ovh_nowhere' was not found"):
        OVHCloudAIEndpointsHook(ovh_conn_id="ovh_nowhere").list_models()


# -- 401 / 403 -----------------------------------------------------------------------------------


def test_401_unauthorized_for_a_wrong_token_with_request_id(ovh_stub, monkeypatch):
    set_env_connection(
        monkeypatch, {"conn_type": "ovhcloud_ai_endpoints", "host": ovh_stub.base_url, "password": "wrong-token"}
    )
    with pytest.raises(errors.UnauthorizedError) as caught:
        _chat()
    message = str(caught.value)
    assert message.startswith("401 Unauthorized")
    assert "Verify your token is correct" in message and "Invalid or expired token" in message
    [request] = ovh_stub.requests  # the SDK does not retry a 401
    assert request.headers["authorization"] == "Bearer wrong-token"
    assert f"(request id: {request.request_id})" in message and caught.value.request_id == request.request_id
    assert isinstance(caught.value, AirflowFailException)


def test_403_mentions_revoked_token_and_payment_method(stub_connection, ovh_stub):
    ovh_stub.fail(403, body={"message": "Resource tag 'discovery' is forbidden"})
    with pytest.raises(errors.ForbiddenError) as caught:
        _chat()
    message = str(caught.value)
    assert message.startswith("403 Forbidden")
    assert "revoked" in message and "payment method" in message and "Resource tag 'discovery' is forbidden" in message
    assert len(ovh_stub.requests) == 1


def test_a_server_echoing_the_token_never_gets_it_into_our_message(stub_connection, ovh_stub, caplog, capfd):
    ovh_stub.fail(401, body=f"rejected header: {ECHO_AUTHORIZATION}")
    with pytest.raises(errors.UnauthorizedError) as caught:
        _chat()
    assert ovh_stub.requests[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"  # the echo was real
    assert "rejected header: Bearer ***" in str(caught.value)
    out, err = capfd.readouterr()
    for text in (str(caught.value), repr(caught.value), out, err, caplog.text):
        assert TEST_TOKEN not in text
    assert caught.value.__cause__ is None  # the SDK's exception (raw body) is not chained into logs


# -- 404 model not found ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("Meta-Llama-3.3-70B-Instruct", "Meta-Llama-3_3-70B-Instruct"),
        ("bge-m3", "BGE-M3"),
        ("gpt-oss-12b", "gpt-oss-120b"),
    ],
)
def test_model_not_found_suggests_the_closest_listed_models(stub_connection, ovh_stub, typo, closest):
    with pytest.raises(errors.ModelNotFoundError) as caught:
        OVHCloudAIEndpointsHook().create_embedding(model=typo, input="x") if "bge" in typo else _chat(model=typo)
    message = str(caught.value)
    assert message.startswith(f"Model not found: '{typo}'")
    assert caught.value.suggestions[0] == closest and f"Closest available: '{closest}'" in message
    assert "https://endpoints.ai.cloud.ovh.net/catalog/" in message
    assert f"Model '{typo}' does not exist" in message  # the server's own words
    assert [(r.method, r.path) for r in ovh_stub.requests][-1] == ("GET", "/v1/models")
    assert len(_posts(ovh_stub.requests)) == 1


def test_404_for_a_listed_model_points_at_the_base_url(ovh_stub, monkeypatch):
    # The models list answers, but the completion path does not exist under this base URL.
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": ovh_stub.base_url, "password": TEST_TOKEN})
    ovh_stub.fail(404, body={"message": "Not Found"})
    with pytest.raises(errors.EndpointNotFoundError, match=r"^404 Not Found: .*lists model 'BGE-M3'.*base URL"):
        OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input="x")


# -- 400 / 422 / other 4xx ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "prefix"),
    [
        (400, errors.BadRequestError, "400 Bad Request"),
        (422, errors.UnprocessableEntityError, "422 Unprocessable Entity"),
        (413, errors.RequestRejectedError, "413 Client Error"),
    ],
)
def test_other_client_errors_fail_fast_with_the_server_message(ovh_connection, llmock, status, error_class, prefix):
    llmock.fail(status, message="temperature must be <= 2")
    with pytest.raises(error_class) as caught:
        _chat()
    assert str(caught.value).startswith(prefix) and "temperature must be <= 2" in str(caught.value)
    assert isinstance(caught.value, AirflowFailException)
    assert len(_posts(llmock.requests)) == 1


# -- 429 / 5xx / timeouts / connection errors: retried by the SDK -------------------------------


def test_429_honours_retry_after_then_succeeds(ovh_connection, llmock):
    llmock.rate_limit(times=2, retry_after=0.4)
    response = _chat()
    assert response["object"] == "chat.completion"
    posts = _posts(llmock.requests)
    assert [r.status for r in posts] == [429, 429, 200]
    gaps = [b.started_at - a.ended_at for a, b in zip(posts, posts[1:], strict=False)]
    assert all(gap >= 0.38 for gap in gaps), gaps  # waited Retry-After, not the 0.5 s x 2^n backoff


def test_429_after_retries_exhausted(ovh_connection, llmock):
    llmock.rate_limit(times=3, retry_after=0.2)
    with pytest.raises(errors.RateLimitError) as caught:
        _chat()
    message = str(caught.value)
    assert message.startswith("429 Too Many Requests")
    # The retry count is the configured max_retries (the SDK's own count is not public).
    assert "after up to 2 client retries" in message and "Retry-After: 0.2" in message
    assert "retries=3" in message  # says what to do
    assert not isinstance(caught.value, AirflowFailException)  # Airflow task retries still apply
    assert len(_posts(llmock.requests)) == 3


def test_429_with_a_retry_after_beyond_the_sdk_cap_is_not_retried(stub_connection, ovh_stub):
    # Our message quotes what the server asked, not the SDK's private cap; the SDK does not retry.
    ovh_stub.fail(429, body={"message": "slow down"}, headers={"retry-after": "600"})
    with pytest.raises(
        errors.RateLimitError, match=r"^429 Too Many Requests.*the server asked to wait \(Retry-After: 600 s\)"
    ) as caught:
        _chat()
    assert caught.value.retry_after == 600.0 and "slow down" in str(caught.value)
    assert len(ovh_stub.requests) == 1


def test_5xx_is_retried_with_backoff_then_reported(ovh_connection, llmock):
    llmock.fail(502, times=3, retry_after=0.1)
    with pytest.raises(errors.ServerError) as caught:
        _chat()
    assert str(caught.value).startswith("502 Server Error") and "after up to 2 client retries" in str(caught.value)
    assert not isinstance(caught.value, AirflowFailException)
    assert [r.status for r in _posts(llmock.requests)] == [502, 502, 502]


def test_max_retries_from_the_connection_extra(ovh_connection, llmock, monkeypatch):
    set_env_connection(monkeypatch, {**ovh_connection, "extra": {"max_retries": 0}})
    llmock.fail(503, times=2)
    with pytest.raises(errors.ServerError, match="not retried by the client"):
        _chat()
    assert len(_posts(llmock.requests)) == 1


def test_timeout_from_the_connection_extra(ovh_connection, llmock, monkeypatch):
    set_env_connection(monkeypatch, {**ovh_connection, "extra": json.dumps({"timeout": 0.3, "max_retries": 0})})
    llmock.delay(1.5)
    with pytest.raises(errors.EndpointTimeoutError, match=r"^Timeout: chat completion on .* within 0.3 s"):
        _chat()


def test_unreachable_endpoint_is_a_retryable_connection_error(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    set_env_connection(
        monkeypatch,
        {
            "conn_type": "generic",
            "host": f"http://127.0.0.1:{port}/v1",
            "password": TEST_TOKEN,
            "extra": {"max_retries": 1},
        },
    )
    with pytest.raises(errors.EndpointConnectionError) as caught:
        _chat()
    assert str(caught.value).startswith(f"Connection error: could not reach http://127.0.0.1:{port}/v1")
    assert not isinstance(caught.value, AirflowFailException) and isinstance(caught.value, AirflowException)


# -- through Airflow: 4xx fail the task without using its retries --------------------------------


def test_client_errors_fail_the_task_without_airflow_retries(
    airflow_db, ovh_connection, llmock, monkeypatch, capfd, caplog
):
    statuses = [400, 401, 403, 404, 422]
    for status in statuses:
        llmock.fail(status, times=5, model=f"model-{status}")  # would answer every retry the same way
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": ovh_connection["host"]}, conn_id="ovh_no_token")
    with DAG(dag_id=dag_id("client_errors"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        for status in statuses:
            OVHCloudAIEndpointsChatCompletionsOperator(
                task_id=f"status_{status}",
                model=f"model-{status}",
                messages=HI,
                retries=3,
                retry_delay=timedelta(seconds=0),
            )
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="no_token",
            model="m",
            messages=HI,
            ovh_conn_id="ovh_no_token",
            retries=3,
            retry_delay=timedelta(seconds=0),
        )
    dag_run = run_dag(dag)

    states = task_states(dag_run)
    assert states == {**{f"status_{s}": "failed" for s in statuses}, "no_token": "failed"}
    assert all(ti.try_number == 1 for ti in dag_run.get_task_instances())
    for status in statuses:
        assert len([r for r in _posts(llmock.requests) if r.model == f"model-{status}"]) == 1, status
    assert not [r for r in _posts(llmock.requests) if r.model == "m"]

    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    for words in (
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "Model not found: 'model-404'",
        "422 Unprocessable Entity",
        "API key not found: connection 'ovh_no_token'",
    ):
        assert words in logs, words
    assert TEST_TOKEN not in logs

"""How the hook turns an Airflow connection into requests: every connection form, base URL rule,
token source, the anonymous mode, and the OPENAI_* environment being ignored."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from ovh_stub import OVH_MODELS

from ovh_ai_dagfactory.calls import errors
from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.hooks.connection import base_url_of
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator
from provider.conftest import dag_id, set_env_connection
from provider.shared import TEST_TOKEN, run_dag, task_states, xcom_value

HI = [{"role": "user", "content": "hi"}]
OVH = "https://oai.endpoints.kepler.ai.cloud.ovh.net/v1"


@pytest.mark.parametrize(
    ("host", "port", "schema", "extra_base_url", "expected"),
    [
        (None, None, None, None, OVH),
        ("", None, "", None, OVH),
        ("http://127.0.0.1:8000/v1", None, None, None, "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/v1/", None, None, None, "http://127.0.0.1:8000/v1"),
        (
            "https://llama.endpoints.kepler.ai.cloud.ovh.net/api/openai_compat/v1",
            None,
            None,
            None,
            "https://llama.endpoints.kepler.ai.cloud.ovh.net/api/openai_compat/v1",
        ),
        ("https://gateway.example.com", None, None, None, "https://gateway.example.com/v1"),  # path defaults to /v1
        ("gateway.example.com", 8443, "api/v1", None, "https://gateway.example.com:8443/api/v1"),  # URI form
        ("localhost", 11434, "v1", None, "http://localhost:11434/v1"),  # loopback: http
        ("127.0.0.1", 8000, None, None, "http://127.0.0.1:8000/v1"),
        ("http://localhost:9000", 1234, None, None, "http://localhost:9000/v1"),  # the host's own port wins
        ("http://localhost", 9000, "openai", None, "http://localhost:9000/openai"),
        ("ignored.example.com", None, None, "http://10.0.0.5:8080/v1/", "http://10.0.0.5:8080/v1"),  # extra wins
    ],
)
def test_base_url_rules(host, port, schema, extra_base_url, expected):
    assert base_url_of(host, port, schema, extra_base_url) == expected


def test_default_base_url_is_ovh_when_no_host(monkeypatch):
    set_env_connection(monkeypatch, {"conn_type": "generic", "password": TEST_TOKEN})
    hook = OVHCloudAIEndpointsHook()
    assert hook.settings.base_url == OVH
    assert str(hook.get_conn().base_url).rstrip("/") == OVH  # no request made


def test_json_env_connection_sends_the_bearer_token_and_ignores_openai_env(
    stub_connection, ovh_stub, llmock, monkeypatch
):
    # llmock's fixture set OPENAI_BASE_URL / OPENAI_API_KEY to itself; add the org/project ones too.
    monkeypatch.setenv("OPENAI_ORG_ID", "org-should-not-be-sent")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-should-not-be-sent")
    import os

    assert os.environ["OPENAI_BASE_URL"] == llmock.base_url("openai")

    OVHCloudAIEndpointsHook().chat_completion(model="gpt-oss-120b", messages=HI)

    assert llmock.requests == []  # nothing went where OPENAI_BASE_URL points
    [request] = ovh_stub.requests
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"  # not OPENAI_API_KEY's dummy key
    assert "openai-organization" not in request.headers and "openai-project" not in request.headers


def test_uri_env_connection_with_port_schema_and_extras(ovh_stub, monkeypatch):
    # The URI form splits the URL: host=127.0.0.1, port=PORT, schema=v1, extras from the query.
    uri = f"ovhcloud-ai-endpoints://:{TEST_TOKEN}@127.0.0.1:{ovh_stub.port}/v1?timeout=7&max_retries=1"
    set_env_connection(monkeypatch, uri)
    hook = OVHCloudAIEndpointsHook()
    assert (hook.settings.base_url, hook.settings.timeout, hook.settings.max_retries) == (ovh_stub.base_url, 7.0, 1)
    assert hook.list_models() == OVH_MODELS
    assert ovh_stub.requests[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"


def test_uri_env_connection_with_a_scheme_in_the_host(ovh_stub, monkeypatch):
    # Airflow allows no credentials before a host that has its own scheme: the token goes in the query.
    uri = f"generic://http://127.0.0.1:{ovh_stub.port}/v1?api_key={TEST_TOKEN}"
    set_env_connection(monkeypatch, uri)
    hook = OVHCloudAIEndpointsHook()
    assert hook.settings.base_url == ovh_stub.base_url
    hook.list_models()
    assert ovh_stub.requests[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"


def test_token_from_the_api_key_extra(ovh_stub, monkeypatch):
    set_env_connection(
        monkeypatch, {"conn_type": "generic", "host": ovh_stub.base_url, "extra": {"api_key": TEST_TOKEN}}
    )
    OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input="x")
    assert ovh_stub.requests[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"


def test_anonymous_mode_sends_no_authorization_header(ovh_stub, monkeypatch):
    ovh_stub.allow_anonymous = True
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": ovh_stub.base_url, "extra": {"anonymous": True}})
    response = OVHCloudAIEndpointsHook().chat_completion(model="Meta-Llama-3_3-70B-Instruct", messages=HI)
    assert response["choices"][0]["message"]["content"].startswith("Echo from Meta-Llama-3_3-70B-Instruct")
    assert "authorization" not in ovh_stub.requests[0].headers


def test_constructor_arguments_and_extras_override(ovh_stub, monkeypatch):
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": ovh_stub.base_url, "password": TEST_TOKEN})
    hook = OVHCloudAIEndpointsHook(timeout=12, max_retries=5)
    client = hook.get_conn()
    assert hook.get_conn() is client  # cached
    assert (client.max_retries, client.timeout.read, client.timeout.connect) == (5, 12, 10)
    set_env_connection(
        monkeypatch,
        {
            "conn_type": "generic",
            "host": ovh_stub.base_url,
            "password": TEST_TOKEN,
            "extra": {"timeout": "3", "max_retries": "0"},
        },
    )
    client = OVHCloudAIEndpointsHook(timeout=12, max_retries=5).get_conn()
    assert (client.max_retries, client.timeout.read) == (0, 3)


def test_metadata_db_connection_with_generic_type(airflow_db, ovh_stub):
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    conn_id = "ovh_from_db"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type="generic", host=ovh_stub.base_url, password=TEST_TOKEN))
    try:
        with DAG(dag_id=dag_id("db_connection"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
            OVHCloudAIEndpointsChatCompletionsOperator(
                task_id="chat", model="Mixtral-8x22B-Instruct-v0.1", messages=HI, ovh_conn_id=conn_id
            )
        dag_run = run_dag(dag)
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()

    assert task_states(dag_run) == {"chat": "success"}
    [request] = ovh_stub.requests
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"
    assert xcom_value(dag_run, "chat")["model"] == "Mixtral-8x22B-Instruct-v0.1"
    assert TEST_TOKEN not in json.dumps(xcom_value(dag_run, "chat"))


def test_none_parameters_are_not_sent_and_extra_kwargs_are(stub_connection, ovh_stub):
    hook = OVHCloudAIEndpointsHook()
    hook.chat_completion(model="gpt-oss-120b", messages=HI)
    hook.chat_completion(
        model="gpt-oss-120b", messages=HI, seed=42, response_format={"type": "json_object"}, top_p=None
    )
    first, second = (r.body for r in ovh_stub.requests)
    assert first == {"model": "gpt-oss-120b", "messages": HI}
    assert second == {"model": "gpt-oss-120b", "messages": HI, "seed": 42, "response_format": {"type": "json_object"}}


def test_stream_is_refused_with_a_clear_message(stub_connection, ovh_stub):
    with pytest.raises(errors.OVHCloudAIEndpointsFatalError, match="stream=True is not supported"):
        OVHCloudAIEndpointsHook().chat_completion(model="gpt-oss-120b", messages=HI, stream=True)
    assert ovh_stub.requests == []


def test_deprecation_warning_header_is_logged(stub_connection, ovh_stub, caplog, capfd):
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "old-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    }
    ovh_stub.fail(200, body=body, headers={"x-warning": "model old-model is deprecated, use gpt-oss-120b"})
    response = OVHCloudAIEndpointsHook().chat_completion(model="old-model", messages=HI)
    assert response == body  # the wire JSON exactly, no None-filled fields added
    out, err = capfd.readouterr()
    assert "model old-model is deprecated, use gpt-oss-120b" in caplog.text + out + err


def test_list_models_and_test_connection(stub_connection, ovh_stub):
    hook = OVHCloudAIEndpointsHook()
    assert hook.list_models() == OVH_MODELS
    ok, message = hook.test_connection()
    assert ok and message.startswith(f"Connection successful: {ovh_stub.base_url} lists 5 models")
    assert [(r.method, r.path) for r in ovh_stub.requests] == [("GET", "/v1/models")] * 2


def test_test_connection_reports_a_wrong_token(ovh_stub, monkeypatch):
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": ovh_stub.base_url, "password": "nope"})
    ok, message = OVHCloudAIEndpointsHook().test_connection()
    assert not ok and message.startswith("401 Unauthorized") and "Verify your token" in message
    assert len(ovh_stub.requests) == 1


def test_test_connection_reports_a_missing_token_and_an_unreachable_host(monkeypatch):
    set_env_connection(monkeypatch, {"conn_type": "generic", "host": "http://127.0.0.1:9/v1"})
    ok, message = OVHCloudAIEndpointsHook().test_connection()
    assert not ok and message.startswith("API key not found")
    set_env_connection(
        monkeypatch,
        {"conn_type": "generic", "host": "http://127.0.0.1:9/v1", "password": TEST_TOKEN, "extra": {"max_retries": 0}},
    )
    ok, message = OVHCloudAIEndpointsHook().test_connection()
    assert not ok and message.startswith("Connection error: could not reach http://127.0.0.1:9/v1")
    assert TEST_TOKEN not in message


@pytest.mark.parametrize(
    ("uri", "base_url", "timeout", "max_retries"),
    [  # the URI examples of docs/provider.md
        ("ovhcloud-ai-endpoints://:your-api-token-here@", OVH, 300.0, 2),
        (
            "ovhcloud-ai-endpoints://:your-api-token-here@gateway.example.com:8443/api/v1?timeout=120&max_retries=3",
            "https://gateway.example.com:8443/api/v1",
            120.0,
            3,
        ),
        ("generic://http://127.0.0.1:8000/v1?api_key=your-api-token-here", "http://127.0.0.1:8000/v1", 300.0, 2),
    ],
)
def test_documented_uri_forms(monkeypatch, uri, base_url, timeout, max_retries):
    set_env_connection(monkeypatch, uri)
    settings = OVHCloudAIEndpointsHook().settings
    assert (settings.base_url, settings.api_key, settings.timeout, settings.max_retries) == (
        base_url,
        "your-api-token-here",
        timeout,
        max_retries,
    )
    assert "your-api-token-here" not in repr(settings)


@pytest.mark.parametrize("where", ["password", "api_key"])
def test_the_token_is_masked_in_airflow_logs(ovh_stub, monkeypatch, where):
    # Airflow already masks a connection's password and sensitive extras when it reads them; the hook
    # registers the token too (mask_secret), so the end result holds whatever loaded the connection.
    from ovh_ai_dagfactory.compat import AIRFLOW_V3

    if AIRFLOW_V3:
        from airflow.sdk._shared.secrets_masker import redact
    else:
        from airflow.utils.log.secrets_masker import redact

    token = f"sk-masked-{where}-0b7a"  # seen by nothing but this test
    conn = {"conn_type": "generic", "host": ovh_stub.base_url}
    conn.update({"password": token} if where == "password" else {"extra": {"api_key": token}})
    set_env_connection(monkeypatch, conn)
    assert OVHCloudAIEndpointsHook().settings.api_key == token
    assert token not in str(redact(f"Authorization: Bearer {token}"))

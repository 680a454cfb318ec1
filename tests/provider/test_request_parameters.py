"""The rest of the OpenAI API through the operators: `completion_kwargs` / `embedding_kwargs`,
templated, rendered by Airflow in a DAG run and seen on the wire by the stub (body, headers, query);
`ovh_conn_id` templated; a parameter given both ways refused; a parameter the SDK does not take
refused before any request.
"""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta, timezone

import pytest

from ovh_ai_dagfactory.calls import errors
from ovh_ai_dagfactory.calls.parameters import CHAT_PARAMETERS
from ovh_ai_dagfactory.compat import DAG, AirflowFailException
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)
from ovh_ai_dagfactory.operators.batch import OVHCloudAIEndpointsBatchOperator
from ovh_ai_dagfactory.operators.chat_job import OVHCloudAIEndpointsChatJobOperator
from provider.conftest import dag_id, set_env_connection
from provider.shared import CONN_ID, TEST_TOKEN, run_dag, task_states, xcom_value

HI = [{"role": "user", "content": "hi"}]
TEMPLATED_CONN = "ovh_templated_conn"


def _posts(ovh_stub, path):
    return [r for r in ovh_stub.requests if r.method == "POST" and r.path == path]


def test_templated_completion_and_embedding_kwargs_reach_the_wire_in_a_dag_run(airflow_db, ovh_stub, monkeypatch):
    # Only the templated connection id exists: an unrendered "{{ params.conn }}" would fail the task.
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", raising=False)
    set_env_connection(
        monkeypatch,
        {"conn_type": "ovhcloud_ai_endpoints", "host": ovh_stub.base_url, "password": TEST_TOKEN},
        conn_id=TEMPLATED_CONN,
    )
    params = {"conn": TEMPLATED_CONN, "seed": 42, "presence": 0.5, "top_k": 5, "dims": 256}
    with DAG(
        dag_id=dag_id("request_kwargs"),
        start_date=datetime(2024, 1, 1),
        schedule=None,
        params=params,
        render_template_as_native_obj=True,  # "{{ params.seed }}" renders to the int 42, not "42"
    ) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat",
            model="gpt-oss-120b",
            messages=HI,
            temperature=0.2,
            completion_kwargs={
                "seed": "{{ params.seed }}",
                "presence_penalty": "{{ params.presence }}",
                "frequency_penalty": 0.25,
                "extra_body": {"top_k": "{{ params.top_k }}", "note": "run of {{ dag.dag_id }}"},
                "extra_headers": {"X-Airflow-Dag": "{{ dag.dag_id }}"},
                "extra_query": {"trace": "{{ task.task_id }}"},
            },
            ovh_conn_id="{{ params.conn }}",
        )
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="embed",
            model="BGE-M3",
            input=["a", "b"],
            embedding_kwargs={"dimensions": "{{ params.dims }}", "user": "{{ task.task_id }}"},
            ovh_conn_id="{{ params.conn }}",
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"chat": "success", "embed": "success"}
    [chat] = _posts(ovh_stub, "/v1/chat/completions")
    assert chat.body == {
        "model": "gpt-oss-120b",
        "messages": HI,
        "temperature": 0.2,
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "top_k": 5,  # extra_body keys are merged into the JSON body, as the SDK documents
        "note": f"run of {dag.dag_id}",
    }
    assert chat.headers["x-airflow-dag"] == dag.dag_id and chat.query == {"trace": ["chat"]}
    assert chat.headers["authorization"] == f"Bearer {TEST_TOKEN}"  # from the rendered connection id
    [embed] = _posts(ovh_stub, "/v1/embeddings")
    assert embed.body == {
        "model": "BGE-M3",
        "input": ["a", "b"],
        "dimensions": 256,
        "user": "embed",
        "encoding_format": "float",
    }
    assert xcom_value(dag_run, "chat")["choices"][0]["message"]["content"] == "Echo from gpt-oss-120b: hi"


def test_the_dag_factorys_mapping_of_seed_penalties_and_extra_body_reaches_the_wire(
    airflow_db, stub_connection, ovh_stub
):
    # What the YAML step fields become (completion_kwargs={"seed": ..., "extra_body": {...}}), in a
    # DAG rendered the default way: strings inside extra_body are templates, numbers stay numbers.
    with DAG(dag_id=dag_id("factory_kwargs"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat",
            model="Meta-Llama-3_3-70B-Instruct",
            messages=HI,
            completion_kwargs={
                "seed": 7,
                "presence_penalty": -0.5,
                "frequency_penalty": 1.5,
                "extra_body": {"chat_template_kwargs": {"tag": "{{ dag_run.dag_id }}"}, "top_k": 3},
            },
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"chat": "success"}
    [chat] = _posts(ovh_stub, "/v1/chat/completions")
    assert (chat.body["seed"], chat.body["presence_penalty"], chat.body["frequency_penalty"]) == (7, -0.5, 1.5)
    assert chat.body["chat_template_kwargs"] == {"tag": dag.dag_id} and chat.body["top_k"] == 3
    assert chat.body["temperature"] == 1.0  # the seed's default is still sent


# -- one place per parameter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "arguments", "message"),
    [
        (
            OVHCloudAIEndpointsChatCompletionsOperator,
            {"messages": HI, "temperature": 0.2, "completion_kwargs": {"temperature": 0.5}},
            "completion_kwargs sets 'temperature', which the operator takes as its own argument: "
            "pass temperature=... to the operator",
        ),
        (
            OVHCloudAIEndpointsChatCompletionsOperator,
            {"messages": HI, "completion_kwargs": {"max_tokens": 10, "seed": 1}},
            "completion_kwargs sets 'max_tokens'",
        ),
        (
            OVHCloudAIEndpointsEmbeddingOperator,
            {"input": "x", "embedding_kwargs": {"input": ["y"], "model": "BGE-M3"}},
            "embedding_kwargs sets 'input', 'model'",
        ),
        (
            OVHCloudAIEndpointsChatCompletionsOperator,
            {"messages": HI, "completion_kwargs": [("seed", 1)]},
            "completion_kwargs must be a dict of request parameters, not list",
        ),
    ],
)
def test_a_parameter_given_both_ways_is_refused_when_the_operator_is_built(operator, arguments, message):
    with pytest.raises(errors.InvalidRequestError) as caught:
        operator(task_id="t", model="gpt-oss-120b", **arguments)
    assert str(caught.value).startswith("Invalid request: ") and message in str(caught.value)


def test_a_parameter_given_both_ways_after_rendering_fails_the_task_at_once(
    airflow_db, stub_connection, ovh_stub, capfd, caplog
):
    with DAG(
        dag_id=dag_id("kwargs_conflict"),
        start_date=datetime(2024, 1, 1),
        schedule=None,
        params={"kwargs": {"temperature": 0.5}, "text": "seed=1"},
        render_template_as_native_obj=True,
    ) as dag:
        # A whole-dict template: its keys are known only once rendered.
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="conflict",
            model="gpt-oss-120b",
            messages=HI,
            temperature=0.2,
            completion_kwargs="{{ params.kwargs }}",
            retries=2,
            retry_delay=timedelta(seconds=0),
        )
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="not_a_dict",
            model="gpt-oss-120b",
            messages=HI,
            completion_kwargs="{{ params.text }}",
            retries=2,
            retry_delay=timedelta(seconds=0),
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"conflict": "failed", "not_a_dict": "failed"}
    assert all(ti.try_number == 1 for ti in dag_run.get_task_instances())  # fatal: no task retries
    assert ovh_stub.requests == []
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "Invalid request: completion_kwargs sets 'temperature'" in logs
    assert "Invalid request: completion_kwargs must be a dict of request parameters, not str 'seed=1'" in logs


def test_a_whole_dict_template_renders_to_the_request_in_a_native_dag(airflow_db, stub_connection, ovh_stub):
    with DAG(
        dag_id=dag_id("kwargs_native"),
        start_date=datetime(2024, 1, 1),
        schedule=None,
        params={"kwargs": {"seed": 3, "extra_body": {"top_k": 2}}},
        render_template_as_native_obj=True,
    ) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat", model="gpt-oss-120b", messages=HI, completion_kwargs="{{ params.kwargs }}"
        )
    assert task_states(run_dag(dag)) == {"chat": "success"}
    [chat] = _posts(ovh_stub, "/v1/chat/completions")
    assert (chat.body["seed"], chat.body["top_k"]) == (3, 2)


# -- the hook ---------------------------------------------------------------------------------------


def test_the_hook_refuses_a_parameter_the_sdk_does_not_take_before_any_request(stub_connection, ovh_stub):
    with pytest.raises(errors.InvalidRequestError) as caught:
        OVHCloudAIEndpointsHook().chat_completion(model="gpt-oss-120b", messages=HI, top_k=5)
    message = str(caught.value)
    assert message.startswith("Invalid request: chat completion got parameter(s) 'top_k'")
    assert "extra_body={'top_k': ...}" in message
    assert isinstance(caught.value, AirflowFailException)
    with pytest.raises(errors.InvalidRequestError, match=r"'dimension' \(did you mean 'dimensions'\?\)"):
        OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input="x", dimension=8)
    assert ovh_stub.requests == []


def test_the_hook_forwards_extra_body_headers_and_query_of_an_embedding(stub_connection, ovh_stub):
    OVHCloudAIEndpointsHook().create_embedding(
        model="BGE-M3",
        input="x",
        dimensions=64,
        extra_body={"truncate": True},
        extra_headers={"X-Trace": "t-1"},
        extra_query={"debug": "1"},
    )
    [request] = ovh_stub.requests
    assert request.body == {
        "model": "BGE-M3",
        "input": "x",
        "dimensions": 64,
        "encoding_format": "float",
        "truncate": True,
    }
    assert request.headers["x-trace"] == "t-1" and request.query == {"debug": ["1"]}


def test_operators_with_kwargs_serialize_with_the_templates_unrendered():
    from ovh_ai_dagfactory.compat import AIRFLOW_V3

    with DAG(dag_id="serialize_kwargs", start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat",
            model="m",
            messages=HI,
            completion_kwargs={"seed": "{{ params.seed }}", "extra_body": {"top_k": 5}},
            ovh_conn_id="{{ var.value.ai_conn }}",
        )
    if AIRFLOW_V3:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    else:
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer

    text = json.dumps(Serializer.to_dict(dag))
    assert "{{ params.seed }}" in text and "{{ var.value.ai_conn }}" in text and '"top_k"' in text


def test_the_completion_kwargs_example_of_docs_provider_md(airflow_db, stub_connection, ovh_stub, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_AI_CONNECTION", CONN_ID)
    with DAG(dag_id=dag_id("docs_kwargs"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        # As written in docs/provider.md, "Other request parameters".
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat",
            model="Meta-Llama-3_3-70B-Instruct",
            messages=[{"role": "user", "content": "Summarize the report of {{ ds }}"}],
            temperature=0.2,
            completion_kwargs={
                "seed": 42,
                "presence_penalty": 0.5,
                "response_format": {"type": "json_object"},
                "extra_body": {"top_k": 20},
            },
            ovh_conn_id="{{ var.value.ai_connection }}",
        )
    dag_run = run_dag(dag, logical_date=datetime(2024, 3, 5, tzinfo=timezone.utc))
    assert task_states(dag_run) == {"chat": "success"}
    [chat] = _posts(ovh_stub, "/v1/chat/completions")
    assert chat.body == {
        "model": "Meta-Llama-3_3-70B-Instruct",
        "messages": [{"role": "user", "content": "Summarize the report of 2024-03-05"}],
        "temperature": 0.2,
        "seed": 42,
        "presence_penalty": 0.5,
        "response_format": {"type": "json_object"},
        "top_k": 20,
    }


# -- the chat parameters, declared once ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "before", "after", "defaults"),
    [
        (
            OVHCloudAIEndpointsChatCompletionsOperator.__init__,
            ["self", "model", "messages"],
            ["completion_kwargs", "output_schema", "requests_per_minute", "ovh_conn_id", "kwargs"],
            {"temperature": 1.0, "max_tokens": None, "top_p": None, "stop": None},  # the seed's defaults
        ),
        (
            OVHCloudAIEndpointsBatchOperator.__init__,
            ["self", "kind", "model", "inputs", "custom_ids"],
            [
                "request_kwargs",
                "completion_window",
                "on_line_error",
                "deferrable",
                "poll_interval",
                "max_poll_interval",
                "ovh_conn_id",
                "kwargs",
            ],
            {"temperature": None, "max_tokens": None, "top_p": None, "stop": None},
        ),
        (
            OVHCloudAIEndpointsChatJobOperator.__init__,
            ["self", "model", "messages", "items", "input_file", "input_conn_id", "id_field"],
            [
                "completion_kwargs",
                "output_schema",
                "output_uri",
                "output_conn_id",
                "part_size",
                "max_concurrency",
                "requests_per_minute",
                "on_item_error",
                "max_failed_fraction",
                "max_xcom_bytes",
                "ovh_conn_id",
                "kwargs",
            ],
            {"temperature": None, "max_tokens": None, "top_p": None, "stop": None},
        ),
        (
            OVHCloudAIEndpointsHook.chat_completion,
            ["self", "model", "messages"],
            ["kwargs"],
            {"temperature": None, "max_tokens": None, "top_p": None, "stop": None},
        ),
    ],
    ids=["chat operator", "batch operator", "chat job operator", "hook"],
)
def test_each_chat_signature_takes_exactly_the_declared_chat_parameters(function, before, after, defaults):
    # CHAT_PARAMETERS (calls/parameters.py) is the one list; the signatures keep explicit keyword
    # arguments (the seed's), so a parameter added to one and not the other fails here.
    parameters = inspect.signature(function).parameters
    assert list(parameters) == [*before, *CHAT_PARAMETERS, *after]
    assert {name: parameters[name].default for name in CHAT_PARAMETERS} == defaults
    if function is not OVHCloudAIEndpointsHook.chat_completion:  # the operators take them by keyword only
        assert {parameters[name].kind for name in CHAT_PARAMETERS} == {inspect.Parameter.KEYWORD_ONLY}

"""Every example of the seed document (docs/ai-endpoints.md), run through Airflow (`dag.test()`)
against a real OpenAI-compatible server on 127.0.0.1, asserting on what the server received.

The examples are copied from the seed with only the import root changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from airflow import DAG  # the seed's import, as a user writes it (works on 2.11 and 3.x)

from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)
from provider.conftest import dag_id
from provider.shared import TEST_TOKEN, run_dag, task_states, xcom_value

pytestmark = pytest.mark.usefixtures("airflow_db")

SEED_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Explain machine learning in simple terms."},
]


def _posts(llmock, path="/v1/chat/completions"):
    return [r for r in llmock.requests if r.path == path and r.method == "POST"]


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TEST_TOKEN not in text


def test_basic_chat_sends_the_seed_request_and_returns_the_openai_shape(ovh_connection, llmock, capfd, caplog):
    llmock.reply("Machine learning is learning patterns from data.")
    with DAG(
        dag_id=dag_id("chat_completion_example"), start_date=datetime(2024, 1, 1), schedule=None, catchup=False
    ) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="generate_response",
            model="Meta-Llama-3_3-70B-Instruct",
            messages=SEED_MESSAGES,
            temperature=0.7,
            max_tokens=500,
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"generate_response": "success"}
    [request] = _posts(llmock)
    # Exactly what the operator was given; unset parameters (top_p, stop) are not sent at all.
    assert request.body == {
        "model": "Meta-Llama-3_3-70B-Instruct",
        "messages": SEED_MESSAGES,
        "temperature": 0.7,
        "max_tokens": 500,
    }
    response = xcom_value(dag_run, "generate_response")
    assert response["object"] == "chat.completion"
    assert response["model"] == "Meta-Llama-3_3-70B-Instruct"
    assert {"id", "created", "choices", "usage"} <= set(response)
    assert response["choices"][0]["message"] == {
        **response["choices"][0]["message"],
        "role": "assistant",
        "content": "Machine learning is learning patterns from data.",
    }
    assert response["choices"][0]["finish_reason"] == "stop"
    usage = response["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0

    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert f"total_tokens={usage['total_tokens']}" in logs  # the usage line was logged (and captured)
    assert_no_token(logs, repr(response))


def test_multi_turn_conversation_is_forwarded_in_order_with_default_temperature(ovh_connection, llmock):
    messages = [
        {"role": "system", "content": "You are a Python expert."},
        {"role": "user", "content": "How do I read a CSV file?"},
        {"role": "assistant", "content": "You can use pandas: `pd.read_csv('file.csv')`"},
        {"role": "user", "content": "How do I filter rows where column 'age' > 30?"},
    ]
    with DAG(dag_id=dag_id("multi_turn"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="multi_turn_chat", model="Meta-Llama-3_3-70B-Instruct", messages=messages
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"multi_turn_chat": "success"}
    [request] = _posts(llmock)
    assert request.body["messages"] == messages
    assert request.body["temperature"] == 1.0  # the seed's documented default
    assert "max_tokens" not in request.body and "top_p" not in request.body and "stop" not in request.body


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("temperature", 0.2), ("max_tokens", 7), ("top_p", 0.9), ("stop", "END"), ("stop", ["\n\n", "###"])],
)
def test_each_parameter_of_the_table_reaches_the_request(ovh_connection, llmock, parameter, value):
    # One hook call per parameter, outside a DAG: the DAG runs above already cover the operator path,
    # and the operator passes the same keyword arguments (see test_operator_parameters_reach_the_request).
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

    OVHCloudAIEndpointsHook().chat_completion(
        model="m", messages=[{"role": "user", "content": "x"}], **{parameter: value}
    )
    assert llmock.last_request.body[parameter] == value


def test_operator_parameters_reach_the_request(ovh_connection, llmock):
    params = {"temperature": 0.0, "max_tokens": 42, "top_p": 0.5, "stop": ["END"]}
    with DAG(dag_id=dag_id("all_params"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat", model="Mixtral-8x22B-Instruct-v0.1", messages=[{"role": "user", "content": "hi"}], **params
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"chat": "success"}
    [request] = _posts(llmock)
    assert request.body == {
        "model": "Mixtral-8x22B-Instruct-v0.1",
        "messages": [{"role": "user", "content": "hi"}],
        **params,
    }


def test_single_and_batch_embeddings(stub_connection, ovh_stub, capfd, caplog):
    documents = ["First document to embed", "Second document to embed", "Third document to embed"]
    with DAG(dag_id=dag_id("embeddings"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        single = OVHCloudAIEndpointsEmbeddingOperator(
            task_id="create_embedding", model="BGE-M3", input="Apache Airflow is a workflow orchestration tool"
        )
        batch = OVHCloudAIEndpointsEmbeddingOperator(task_id="batch_embeddings", model="BGE-M3", input=documents)
        single >> batch
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"create_embedding": "success", "batch_embeddings": "success"}
    bodies = [r.body for r in ovh_stub.requests if r.path == "/v1/embeddings"]
    # encoding_format: the hook asks for floats (the SDK would ask for base64 otherwise).
    assert bodies == [
        {"model": "BGE-M3", "input": "Apache Airflow is a workflow orchestration tool", "encoding_format": "float"},
        {"model": "BGE-M3", "input": documents, "encoding_format": "float"},
    ]
    one = xcom_value(dag_run, "create_embedding")
    many = xcom_value(dag_run, "batch_embeddings")
    assert one["object"] == "list" and one["model"] == "BGE-M3"
    assert [d["index"] for d in one["data"]] == [0]
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 1024 for d in many["data"])
    assert all(isinstance(x, float) for x in one["data"][0]["embedding"])
    assert many["usage"]["total_tokens"] == many["usage"]["prompt_tokens"] > 0
    out, err = capfd.readouterr()
    # Where a task's log lands (fd, or only the log records) depends on what configured logging
    # first in this process on 2.11; the usage line must be in one of them and the token in none.
    logs = out + err + caplog.text
    assert "total_tokens=" in logs
    assert_no_token(logs)


def custom_ai_logic(**context):  # the seed's "Using the Hook Directly" callable, verbatim
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

    hook = OVHCloudAIEndpointsHook(ovh_conn_id="ovh_ai_endpoints_default")

    # Chat completion
    response = hook.chat_completion(
        model="Meta-Llama-3_3-70B-Instruct",
        messages=[{"role": "user", "content": "Summarize this text: ..."}],
        temperature=0.3,
        max_tokens=100,
    )

    summary = response["choices"][0]["message"]["content"]

    # Create embedding of the summary
    embedding_response = hook.create_embedding(
        model="BGE-M3",
        input=summary,
    )

    return {"summary": summary, "embedding": embedding_response["data"][0]["embedding"]}


def test_hook_inside_a_python_operator_chats_then_embeds(stub_connection, ovh_stub):
    from airflow.operators.python import PythonOperator  # the seed's import (deprecated alias on 3.x)

    with DAG(dag_id=dag_id("custom_ai"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        PythonOperator(task_id="custom_ai_task", python_callable=custom_ai_logic)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"custom_ai_task": "success"}
    chat, embed = [r for r in ovh_stub.requests if r.method == "POST"]
    assert chat.path == "/v1/chat/completions"
    assert chat.body["temperature"] == 0.3 and chat.body["max_tokens"] == 100
    assert chat.headers["authorization"] == f"Bearer {TEST_TOKEN}"
    result = xcom_value(dag_run, "custom_ai_task")
    assert result["summary"] == "Echo from Meta-Llama-3_3-70B-Instruct: Summarize this text: ..."
    assert embed.path == "/v1/embeddings" and embed.body["input"] == result["summary"]
    assert len(result["embedding"]) == 1024


def test_jinja_templating_renders_variable_and_ds(stub_connection, ovh_stub, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_LLM_MODEL", "gpt-oss-120b")
    with DAG(
        dag_id=dag_id("templated_example"), start_date=datetime(2024, 1, 1), schedule="@daily", catchup=False
    ) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="analyze_daily_data",
            model="{{ var.value.llm_model }}",  # From Airflow Variables
            messages=[
                {"role": "system", "content": "You are a data analyst."},
                {"role": "user", "content": "Generate a report summary for {{ ds }}"},  # Execution date
            ],
        )
    dag_run = run_dag(dag, logical_date=datetime(2024, 3, 5, tzinfo=timezone.utc))

    assert task_states(dag_run) == {"analyze_daily_data": "success"}
    [request] = [r for r in ovh_stub.requests if r.method == "POST"]
    assert request.body["model"] == "gpt-oss-120b"
    assert request.body["messages"][1] == {"role": "user", "content": "Generate a report summary for 2024-03-05"}
    assert xcom_value(dag_run, "analyze_daily_data")["model"] == "gpt-oss-120b"


def test_xcom_chaining_reads_the_previous_response(ovh_connection, llmock):
    from airflow.operators.python import PythonOperator  # the seed's import (deprecated alias on 3.x)

    def use_previous_response(**context):  # the seed's best-practice 3
        ti = context["ti"]
        response = ti.xcom_pull(task_ids="chat_task")
        content = response["choices"][0]["message"]["content"]
        return content.upper()

    llmock.reply("three bullet points")
    with DAG(dag_id=dag_id("xcom_chain"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        chat = OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat_task", model="Meta-Llama-3_3-70B-Instruct", messages=[{"role": "user", "content": "go"}]
        )
        chat >> PythonOperator(task_id="use_it", python_callable=use_previous_response)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"chat_task": "success", "use_it": "success"}
    assert xcom_value(dag_run, "use_it") == "THREE BULLET POINTS"


def test_task_retries_after_the_sdk_gives_up(ovh_connection, llmock):
    # Three 503s exhaust the SDK (1 try + 2 retries); the seed's `retries=3` task argument then
    # makes Airflow run the task again, and the 4th request succeeds.
    llmock.fail(503, times=3, retry_after=0.2)
    with DAG(dag_id=dag_id("chat_with_retry"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="chat_with_retry",
            model="Meta-Llama-3_3-70B-Instruct",
            messages=[{"role": "user", "content": "hi"}],
            retries=3,
            retry_delay=timedelta(seconds=0),
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"chat_with_retry": "success"}
    assert [r.status for r in _posts(llmock)] == [503, 503, 503, 200]
    [ti] = dag_run.get_task_instances()
    assert ti.try_number == 2

"""Each example pipeline, loaded by the loader and run through Airflow against llmock.

Asserts on what the endpoint received (model, messages after templating, parameters) and on what
the next step got, the way the seed document's examples would be checked by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from conftest import run_dag, task_states, xcom_value

MODEL = "Meta-Llama-3_3-70B-Instruct"


def _run(example_pipelines, dag_id, **kwargs):
    dag_run = run_dag(example_pipelines.dags[dag_id], **kwargs)
    states = task_states(dag_run)
    assert set(states.values()) == {"success"}, states
    return dag_run


def _bodies(llmock, suffix):
    return [request.body for request in llmock.requests if request.path.endswith(suffix)]


def test_basic_chat(airflow_db, ovh_connection, llmock, example_pipelines):
    llmock.reply("Machine learning is learning from examples.")
    dag_run = _run(example_pipelines, "chat_completion_example")
    [body] = _bodies(llmock, "/chat/completions")
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain machine learning in simple terms."},
    ]
    assert body["temperature"] == 0.7 and body["max_tokens"] == 500
    response = xcom_value(dag_run, "generate_response")
    assert response["choices"][0]["message"]["content"] == "Machine learning is learning from examples."


def test_multi_turn_chat(airflow_db, ovh_connection, llmock, example_pipelines):
    _run(example_pipelines, "multi_turn_chat")
    [body] = _bodies(llmock, "/chat/completions")
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == "You can use pandas: `pd.read_csv('file.csv')`"
    assert body["temperature"] == 1.0  # the operator's default: the pipeline did not set it


def test_templated_daily_report(airflow_db, ovh_connection, llmock, example_pipelines, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_LLM_MODEL", "gpt-oss-120b")
    _run(example_pipelines, "templated_example", logical_date=datetime(2024, 3, 5, tzinfo=timezone.utc))
    [body] = _bodies(llmock, "/chat/completions")
    assert body["model"] == "gpt-oss-120b"
    assert body["messages"][1] == {"role": "user", "content": "Generate a report summary for 2024-03-05"}


def test_single_embedding(airflow_db, ovh_connection, llmock, example_pipelines):
    dag_run = _run(example_pipelines, "single_embedding")
    [body] = _bodies(llmock, "/embeddings")
    assert body == {"model": "BGE-M3", "input": "Apache Airflow is a workflow orchestration tool"} or (
        body["model"] == "BGE-M3" and body["input"] == "Apache Airflow is a workflow orchestration tool"
    )
    assert len(xcom_value(dag_run, "create_embedding")["data"]) == 1


def test_batch_embeddings(airflow_db, ovh_connection, llmock, example_pipelines):
    dag_run = _run(example_pipelines, "batch_embeddings")
    [body] = _bodies(llmock, "/embeddings")
    assert body["input"] == ["First document to embed", "Second document to embed", "Third document to embed"]
    assert len(xcom_value(dag_run, "batch_embeddings")["data"]) == 3


def test_chat_with_retries(airflow_db, ovh_connection, llmock, example_pipelines):
    task = example_pipelines.dags["chat_with_retry"].get_task("chat_with_retry")
    assert task.retries == 3 and task.retry_delay == timedelta(seconds=30)
    _run(example_pipelines, "chat_with_retry")
    [body] = _bodies(llmock, "/chat/completions")
    assert body["messages"] == [{"role": "user", "content": "Give me one tip about Apache Airflow."}]


def test_summarize_then_embed_passes_the_answer_on(airflow_db, ovh_connection, llmock, example_pipelines):
    llmock.reply("Airflow schedules and monitors workflows.")
    dag_run = _run(example_pipelines, "summarize_then_embed")
    [chat] = _bodies(llmock, "/chat/completions")
    [embedding] = _bodies(llmock, "/embeddings")
    assert chat["model"] == MODEL and chat["temperature"] == 0.3 and chat["max_tokens"] == 100
    # What the next step got: the chat step's answer, through {{ steps.summarize.content }}.
    assert embedding["model"] == "BGE-M3"
    assert embedding["input"] == "Airflow schedules and monitors workflows."
    assert xcom_value(dag_run, "embed_summary")["data"][0]["embedding"]


def test_classify_ticket_structured_output(airflow_db, ovh_connection, llmock, example_pipelines):
    _run(example_pipelines, "classify_ticket")
    classify, draft = _bodies(llmock, "/chat/completions")
    schema = classify["response_format"]["json_schema"]
    assert classify["response_format"]["type"] == "json_schema" and schema["strict"] is True
    assert schema["name"] == "classify" and schema["schema"]["required"] == ["category", "urgency", "summary"]
    assert "CSV export button crashes" in classify["messages"][1]["content"]
    # llmock answers JSON made for the schema (an enum's first value, a minimum, mock-<name>).
    assert draft["messages"][0]["content"] == "Draft a short reply to this bug (urgency 1 of 5): mock-summary"


def test_explain_topics_fans_out_then_embeds(airflow_db, ovh_connection, llmock, example_pipelines):
    from ovh_ai_dagfactory.factory.local_run import xcoms_of

    dag_run = _run(example_pipelines, "explain_topics")
    states = sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in dag_run.get_task_instances())
    assert [(task, index) for task, index, _ in states if task == "explain"] == [
        ("explain", 0),
        ("explain", 1),
        ("explain", 2),
    ]
    prompts = sorted(body["messages"][0]["content"] for body in _bodies(llmock, "/chat/completions")[1:])
    assert prompts == [
        "Explain text embeddings in one paragraph (topic 1).",
        "Explain vector search in one paragraph (topic 2).",
        "Explain workflow scheduling in one paragraph (topic 0).",
    ]
    answers = [response["choices"][0]["message"]["content"] for response in xcoms_of(dag_run, "explain")]
    [embedding] = _bodies(llmock, "/embeddings")
    assert embedding["input"] == answers and len(answers) == 3  # one list, in topic order
    assert len(xcom_value(dag_run, "embed")["data"]) == 3


def test_embed_corpus_reads_the_file_next_to_it_in_batches(airflow_db, ovh_connection, llmock, example_pipelines):
    import json

    from conftest import REPO_ROOT

    dag_run = _run(example_pipelines, "embed_corpus")
    corpus = [json.loads(line) for line in (REPO_ROOT / "pipelines" / "data" / "corpus.jsonl").read_text().splitlines()]
    sent = _bodies(llmock, "/embeddings")
    assert sorted(len(body["input"]) for body in sent) == [8, 8]  # batch_size: 8
    assert sorted(text for body in sent for text in body["input"]) == sorted(row["text"] for row in corpus)
    response = xcom_value(dag_run, "embed_corpus")
    assert [item["index"] for item in response["data"]] == list(range(len(corpus)))


def test_classify_tickets_runs_every_ticket_in_one_task(airflow_db, ovh_connection, llmock, example_pipelines):
    import json

    from conftest import REPO_ROOT

    dag_run = _run(example_pipelines, "classify_tickets")
    tickets = [
        json.loads(line) for line in (REPO_ROOT / "pipelines" / "data" / "tickets.jsonl").read_text().splitlines()
    ]
    chats = _bodies(llmock, "/chat/completions")
    classified = sorted(body["messages"][1]["content"] for body in chats if len(body["messages"]) == 2)
    assert classified == sorted(f"Ticket {ticket['id']}: {ticket['text']}" for ticket in tickets)
    assert all(body["response_format"]["type"] == "json_schema" for body in chats if len(body["messages"]) == 2)
    rows = xcom_value(dag_run, "classify")["data"]
    assert [row["id"] for row in rows] == [ticket["id"] for ticket in tickets] and not xcom_value(dag_run, "classify")[
        "failed"
    ]
    [summary] = [body for body in chats if len(body["messages"]) == 1]
    assert f"of {len(tickets)} tickets are bugs" in summary["messages"][0]["content"]

"""`mode: batch` in YAML: a for_each chat step or an embedding step runs as one OVH Batch API job
(deferred to the trigger, which `dag.test()` runs in-process), and later steps read it exactly as
in sync mode — through Airflow, against the batch stub."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import run_dag, task_states, xcom_value

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text

PIPELINE = """\
schedule: null
params:
  tickets: {type: array, default: ["the export crashes", "add dark mode", "how do I log in?"]}
steps:
  classify:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    mode: batch
    completion_window: 48h
    for_each: "{{ params.tickets }}"
    temperature: 0
    messages: [{role: user, content: "Classify ticket {{ item_index }}: {{ item }}"}]
  embed:
    type: embedding
    model: BGE-M3
    mode: batch
    input: "{{ steps.classify.contents }}"
  report:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: "{{ steps.classify.contents | length }} answers, {{ steps.embed.embeddings | length }} vectors"}]
"""


def _quick(dag: Any) -> Any:
    for task in dag.tasks:  # poll the stub every few ms instead of every minute
        if hasattr(task, "poll_interval"):
            task.poll_interval, task.max_poll_interval = 0.02, 0.05
    return dag


def test_batch_steps_run_as_batch_jobs_and_read_like_sync_steps(airflow_db, batch_stub):
    dag = _quick(build_dag(parse_pipeline_text(PIPELINE, "/pipelines/batch.yaml")))
    assert [type(dag.get_task(t)).__name__ for t in ("classify", "embed")] == ["PipelineBatchOperator"] * 2
    assert dag.get_task("classify").operator_name == "OVHCloudAIEndpointsBatchOperator"
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    chat_batch, embedding_batch = batch_stub.batches.values()
    assert chat_batch["completion_window"] == "48h" and embedding_batch["completion_window"] == "24h"
    lines = [json.loads(line) for line in batch_stub.uploads[0]["content"].splitlines()]
    assert [line["body"]["messages"][0]["content"] for line in lines] == [
        "Classify ticket 0: the export crashes",
        "Classify ticket 1: add dark mode",
        "Classify ticket 2: how do I log in?",
    ]
    assert all(line["body"]["temperature"] == 0 for line in lines)
    answers = [response["choices"][0]["message"]["content"] for response in xcom_value(dag_run, "classify")]
    texts = [json.loads(line)["body"]["input"] for line in batch_stub.uploads[1]["content"].splitlines()]
    assert texts == answers  # item order kept, though the stub shuffles its output lines
    assert len(xcom_value(dag_run, "embed")["data"]) == 3
    [report] = [r.body for r in batch_stub.requests if r.path.endswith("/chat/completions")]
    assert report["messages"][0]["content"] == "3 answers, 3 vectors"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('    for_each: "{{ params.tickets }}"\n', ""), "chat step 'classify' has mode: batch but no for_each"),
        (("    mode: batch\n    completion_window: 48h\n", "    completion_window: 48h\n"), "not in batch mode"),
        (
            (
                '    input: "{{ steps.classify.contents }}"\n',
                "    input_file: file:///c.jsonl\n    output: file:///v/\n",
            ),
            "'output' does not apply to step 'embed' in mode: batch",
        ),
        (
            ("    temperature: 0\n", "    temperature: 0\n    max_parallel: 2\n"),
            "'max_parallel' does not apply to step 'classify' in mode: batch",
        ),
        (
            ("    temperature: 0\n", "    temperature: 0\n    requests_per_minute: 100\n"),
            "'requests_per_minute' does not apply to step 'classify' in mode: batch",
        ),
    ],
)
def test_validate_refuses_batch_mode_where_it_cannot_apply(change: tuple[str, str], message: str):
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(PIPELINE.replace(*change), "p.yaml")
    assert any(message in error.message for error in caught.value.errors), caught.value.errors


def test_an_embedding_batch_reads_its_texts_from_a_file(airflow_db, batch_stub, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{n}", "text": f"text {n}"}) + "\n" for n in range(4)))
    text = (
        "schedule: null\nsteps:\n  embed:\n    type: embedding\n    model: BGE-M3\n    mode: batch\n"
        f"    input_file: file://{corpus}\n    id_field: id\n"
    )
    dag_run = run_dag(_quick(build_dag(parse_pipeline_text(text, "/pipelines/corpus_batch.yaml"))))
    assert task_states(dag_run) == {"embed": "success"}
    lines = [json.loads(line) for line in batch_stub.uploads[0]["content"].splitlines()]
    assert [(line["custom_id"], line["body"]["input"]) for line in lines] == [
        (f"doc-{n}", f"text {n}") for n in range(4)
    ]
    assert [item["index"] for item in xcom_value(dag_run, "embed")["data"]] == [0, 1, 2, 3]


def test_a_chat_batch_reads_its_items_from_a_file(airflow_db, batch_stub, tmp_path):
    tickets = [{"ticket": f"T-{n}", "text": text} for n, text in enumerate(["export crashes", "add dark mode"])]
    (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(ticket) + "\n" for ticket in tickets))
    text = (
        "schedule: null\nsteps:\n  classify:\n    type: chat\n    model: Meta-Llama-3_3-70B-Instruct\n"
        "    mode: batch\n    input_file: tickets.jsonl\n    id_field: ticket\n"
        "    messages: [{role: user, content: 'Classify {{ item.ticket }} ({{ item_index }}): {{ item.text }}'}]\n"
        "  report:\n    type: chat\n    model: Meta-Llama-3_3-70B-Instruct\n"
        "    messages: [{role: user, content: '{{ steps.classify.contents | length }} answers'}]\n"
    )
    dag = _quick(build_dag(parse_pipeline_text(text, str(tmp_path / "batch_file.yaml"))))
    assert type(dag.get_task("classify")).__name__ == "PipelineBatchOperator"
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    lines = [json.loads(line) for line in batch_stub.uploads[0]["content"].splitlines()]
    assert [line["custom_id"] for line in lines] == ["T-0", "T-1"]
    assert [line["body"]["messages"][0]["content"] for line in lines] == [
        "Classify T-0 (0): export crashes",
        "Classify T-1 (1): add dark mode",
    ]
    assert len(xcom_value(dag_run, "classify")) == 2
    [report] = [r.body for r in batch_stub.requests if r.path.endswith("/chat/completions")]
    assert report["messages"][0]["content"] == "2 answers"

"""Chat at volume (issue 19, part A): the chat job operator through Airflow (`dag.test()`, both
Airflow lines) against the OVH-like stub over real sockets: items from JSON Lines, .txt or a list,
messages rendered per item, rows in item order, the errors policy, retries, parts and manifest.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.operators.chat_job import OVHCloudAIEndpointsChatJobOperator
from provider.conftest import dag_id
from provider.shared import TEST_TOKEN, killed_after_parts, run_dag, serialized, task_states, write_jsonl, xcom_value

pytestmark = pytest.mark.usefixtures("stub_connection")

MODEL = "gpt-oss-120b"
DOCS = [{"id": f"doc-{i}", "text": f"document number {i}"} for i in range(6)]
MESSAGES = [
    {"role": "system", "content": "Classify documents."},
    {"role": "user", "content": "{{ item_index }}/{{ item.id }} ({{ params.label }}): {{ item.text }}"},
]
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def chat_posts(stub):
    return [r for r in stub.requests if r.method == "POST" and r.path.endswith("/chat/completions")]


def logs_of(capfd, caplog):
    out, err = capfd.readouterr()
    return out + err + caplog.text


def run_job(name, **arguments):
    with DAG(dag_id=dag_id(name), start_date=datetime(2024, 1, 1), schedule=None, params={"label": "news"}) as dag:
        OVHCloudAIEndpointsChatJobOperator(
            task_id="classify", model=MODEL, requests_per_minute=None, **{"messages": MESSAGES, **arguments}
        )
    return run_dag(dag)


def test_a_jsonl_input_gives_rows_in_item_order_with_messages_rendered_per_item(
    airflow_db, ovh_stub, tmp_path, capfd, caplog
):
    ovh_stub.latency = 0.02
    ovh_stub.delay(0.3, times=1)  # the first request answers last: rows still come back in item order
    dag_run = run_job("chat_jsonl", input_file=write_jsonl(tmp_path / "docs.jsonl", DOCS), max_concurrency=3)

    assert task_states(dag_run) == {"classify": "success"}
    result = xcom_value(dag_run, "classify")
    assert [r["item_index"] for r in result["data"]] == list(range(6))
    assert [r["id"] for r in result["data"]] == [d["id"] for d in DOCS]
    expected = [f"{i}/doc-{i} (news): document number {i}" for i in range(6)]
    assert [r["content"] for r in result["data"]] == [f"Echo from {MODEL}: {text}" for text in expected]
    assert sorted(r.body["messages"][1]["content"] for r in chat_posts(ovh_stub)) == sorted(expected)
    assert all(r.body["messages"][0] == MESSAGES[0] for r in chat_posts(ovh_stub))
    first = result["data"][0]
    assert first["usage"] == {"prompt_tokens": 2 + 5, "completion_tokens": 8, "total_tokens": 15}
    assert (first["finish_reason"], first["error"]) == ("stop", None)
    assert result["failed"] == 0 and result["model"] == MODEL
    assert result["usage"]["total_tokens"] == sum(r["usage"]["total_tokens"] for r in result["data"])
    logs = logs_of(capfd, caplog)
    assert "Chat done: 6/6 items (100.0%), 0 failed, 6 requests, " in logs
    assert TEST_TOKEN not in logs and TEST_TOKEN not in json.dumps(result)


def test_a_txt_input_and_inline_items(airflow_db, ovh_stub, tmp_path):
    (tmp_path / "lines.txt").write_text("alpha\n\nbeta\n", encoding="utf-8")
    messages = [{"role": "user", "content": "{{ item.text }} #{{ item.id }} on {{ ds }}"}]
    txt = run_job("chat_txt", input_file=f"file://{tmp_path}/lines.txt", messages=messages)
    inline = run_job("chat_items", items=["x", "y"], messages=[{"role": "user", "content": "say {{ item }}"}])

    rows = xcom_value(txt, "classify")["data"]
    ds = txt.logical_date.strftime("%Y-%m-%d")
    assert [(r["id"], r["content"]) for r in rows] == [
        (1, f"Echo from {MODEL}: alpha #1 on {ds}"),
        (3, f"Echo from {MODEL}: beta #3 on {ds}"),
    ]
    assert [(r["id"], r["content"]) for r in xcom_value(inline, "classify")["data"]] == [
        (None, f"Echo from {MODEL}: say x"),
        (None, f"Echo from {MODEL}: say y"),
    ]


def test_output_schema_gives_json_per_row_and_a_mismatch_is_that_items_error(airflow_db, ovh_stub):
    ovh_stub.structured_output("mismatch", times=1)
    dag_run = run_job("chat_schema", items=DOCS, output_schema=SCHEMA, max_concurrency=1, max_failed_fraction=0.5)

    assert task_states(dag_run) == {"classify": "success"}
    rows = xcom_value(dag_run, "classify")["data"]
    assert rows[0]["json"] is None and "content" not in rows[0]
    assert rows[0]["error"]["type"] == "StructuredOutputError" and rows[0]["error"]["http_status"] is None
    assert "does not match output_schema at $.label" in rows[0]["error"]["message"]
    assert "The task fails" not in rows[0]["error"]["message"]  # the task's words are not the item's
    assert [r["json"] for r in rows[1:]] == [{"label": "example"}] * 5
    assert chat_posts(ovh_stub)[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "classify", "schema": SCHEMA, "strict": True},
    }


def test_a_refused_item_is_recorded_and_the_job_goes_on(airflow_db, ovh_stub):
    ovh_stub.fail(400, body={"message": "prompt too long for the model"}, times=1)
    dag_run = run_job("chat_refused", items=DOCS, max_concurrency=1, max_failed_fraction=0.5)

    assert task_states(dag_run) == {"classify": "success"}
    result = xcom_value(dag_run, "classify")
    assert result["failed"] == 1
    assert result["data"][0]["error"]["http_status"] == 400
    assert "prompt too long for the model" in result["data"][0]["error"]["message"]
    assert [r["error"] for r in result["data"][1:]] == [None] * 5
    assert len(chat_posts(ovh_stub)) == 6  # the refused item is not retried


def test_on_item_error_fail_fails_the_task_at_the_first_failed_item(airflow_db, ovh_stub, capfd, caplog):
    ovh_stub.fail(422, body={"message": "unprocessable"}, times=1)
    dag_run = run_job("chat_fail", items=DOCS, max_concurrency=1, on_item_error="fail")

    assert task_states(dag_run) == {"classify": "failed"}
    logs = logs_of(capfd, caplog)
    assert "Item failed: item 0 (id 'doc-0') of the chat job failed (422 " in logs
    assert "Use on_item_error='record'" in logs
    assert len(chat_posts(ovh_stub)) == 1  # no new request after it


def test_too_many_failed_items_fail_the_task_saying_how_to_accept_more(airflow_db, ovh_stub, capfd, caplog):
    ovh_stub.fail(400, body={"message": "nope"}, times=2)
    dag_run = run_job("chat_threshold", items=DOCS, max_concurrency=1)  # 2 of 6 > 0.05, judged at the end

    assert task_states(dag_run) == {"classify": "failed"}
    logs = logs_of(capfd, caplog)
    assert "Too many failed items: 2 of the 6 items done failed (33.3%), over max_failed_fraction=0.05. First: " in logs
    assert "item 0 (id 'doc-0'): 400 Bad Request" in logs
    assert "raise max_failed_fraction (e.g. max_failed_fraction=0.2; 1 never fails)" in logs
    assert "on_item_error='fail'" in logs


def test_the_threshold_is_judged_once_twenty_items_are_done(airflow_db, ovh_stub):
    items = [f"text {i}" for i in range(60)]
    ovh_stub.fail(400, body={"message": "nope"}, times=3)  # items 0-2: 3 of 20 > 0.1
    dag_run = run_job("chat_early", items=items, max_concurrency=1, max_failed_fraction=0.1)

    assert task_states(dag_run) == {"classify": "failed"}
    assert len(chat_posts(ovh_stub)) < 30  # stopped long before the 60th item


def test_429s_are_paced_and_5xx_retried_per_item(airflow_db, ovh_stub, capfd, caplog):
    ovh_stub.limit_rate(120, window=1.0)  # 2 accepted per second
    ovh_stub.fail(500, body={"message": "boom"}, times=2)
    dag_run = run_job("chat_retries", items=DOCS, max_concurrency=3)

    assert task_states(dag_run) == {"classify": "success"}
    result = xcom_value(dag_run, "classify")
    assert [r["error"] for r in result["data"]] == [None] * 6
    assert ovh_stub.counts()["429"] >= 1
    logs = logs_of(capfd, caplog)
    assert "Chat done: 6/6 items (100.0%), 0 failed, " in logs
    assert ", 2 retries, " in logs  # the two 500s; a 429 is a wait, not a retry


def test_rows_go_to_parts_of_part_size_items_with_a_manifest(airflow_db, ovh_stub, tmp_path, capfd, caplog):
    output = tmp_path / "answers"
    ovh_stub.fail(400, body={"message": "nope"}, times=1)
    dag_run = run_job(
        "chat_parts",
        input_file=write_jsonl(tmp_path / "docs.jsonl", DOCS),
        output_uri=f"file://{output}/",
        part_size=4,
        max_concurrency=2,
        max_failed_fraction=0.5,
    )

    assert task_states(dag_run) == {"classify": "success"}
    manifest = xcom_value(dag_run, "classify")
    assert manifest == {
        **manifest,
        "output": f"file://{output}/",
        "format": "jsonl",
        "parts": ["part-000000.jsonl", "part-000001.jsonl"],
        "count": 6,
        "failed": 1,
        "model": MODEL,
        "resumed_parts": 0,
        "requests": 6,
        "retries": 0,
        "rate_limited": 0,
    }
    assert manifest["usage"]["total_tokens"] > 0 and manifest["duration_seconds"] > 0
    assert json.loads((output / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in output.iterdir()) == ["_job.json", "manifest.json", *manifest["parts"]]
    parts = [[json.loads(line) for line in (output / name).read_text().splitlines()] for name in manifest["parts"]]
    assert [[r["item_index"] for r in part] for part in parts] == [[0, 1, 2, 3], [4, 5]]
    assert sum(r["error"] is not None for part in parts for r in part) == 1
    job = json.loads((output / "_job.json").read_text())
    assert (job["model"], job["count"], job["part_size"], job["id_field"]) == (MODEL, 6, 4, "id")
    logs = logs_of(capfd, caplog)
    assert "Chat done: 6/6 items (100.0%), 1 failed, 6 requests" in logs
    assert TEST_TOKEN not in logs + "".join(p.read_text() for p in output.iterdir())


def test_without_output_the_xcom_size_guard_suggests_output_uri(airflow_db, ovh_stub, capfd, caplog):
    items = [f"{'long text ' * 50} {i}" for i in range(40)]
    messages = [{"role": "user", "content": "{{ item }}"}]
    dag_run = run_job("chat_guard", items=items, messages=messages, max_xcom_bytes=4000, max_concurrency=1)

    assert task_states(dag_run) == {"classify": "failed"}
    logs = logs_of(capfd, caplog)
    assert "Chat results too large for XCom: the rows of 40 items are about " in logs
    assert "Set `output_uri` to a directory URI" in logs
    assert len(chat_posts(ovh_stub)) <= 20  # refused from a projection, before the rest is paid for


def test_a_message_that_does_not_render_fails_the_task_naming_the_item(airflow_db, ovh_stub, capfd, caplog):
    dag_run = run_job("chat_render", items=["plain"], messages=[{"role": "user", "content": "{{ item.nope.deeper }}"}])

    assert task_states(dag_run) == {"classify": "failed"}
    assert "Invalid request: the messages of item 0 do not render: UndefinedError" in logs_of(capfd, caplog)
    assert chat_posts(ovh_stub) == []


def test_the_messages_are_not_rendered_by_airflow_and_the_ui_shows_them(airflow_db):
    with DAG(dag_id=dag_id("chat_ser"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        task = OVHCloudAIEndpointsChatJobOperator(task_id="classify", model=MODEL, messages=MESSAGES, items=["a"])
    assert "messages" not in task.template_fields
    stored = json.dumps(serialized(dag))
    assert json.dumps(json.dumps({"messages": MESSAGES}, indent=2))[1:-1] in stored  # doc_json


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"items": ["a"], "input_file": "file:///x.jsonl"}, "give either `items`"),
        ({}, "give either `items`"),
        ({"items": ["a"], "messages": []}, "messages must be a non-empty list"),
        ({"items": ["a"], "on_item_error": "skip"}, "on_item_error must be 'record' or 'fail'"),
        ({"items": ["a"], "part_size": 0}, "part_size must be a whole number"),
        ({"items": ["a"], "completion_kwargs": {"max_tokens": 3}}, "completion_kwargs sets 'max_tokens'"),
    ],
)
def test_the_constructor_checks_its_arguments(arguments, message):
    with pytest.raises(InvalidRequestError, match=message):
        OVHCloudAIEndpointsChatJobOperator(task_id="t", model=MODEL, **{"messages": MESSAGES, **arguments})


_KILLED_TRY = """
import sys
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
OVHCloudAIEndpointsHook().chat_items(
    "gpt-oss-120b", None, lambda item, index: [{"role": "user", "content": item["text"]}],
    input_file=sys.argv[1], output=sys.argv[2], part_size=2, max_concurrency=1, requests_per_minute=None,
    render_source=[{"role": "user", "content": "{{ item.text }}"}],  # what the operator's templates are
)
"""


def test_a_retried_try_sends_only_the_items_without_a_committed_part(airflow_db, ovh_stub, stub_connection, tmp_path):
    import time

    docs = [{"id": f"doc-{i}", "text": f"document number {i}"} for i in range(10)]
    source = write_jsonl(tmp_path / "docs.jsonl", docs)
    output = tmp_path / "answers"
    ovh_stub.latency = 0.2
    # A first try, killed (SIGKILL: no cleanup of any kind) once it has committed two parts.
    kept = killed_after_parts(_KILLED_TRY, [source, f"file://{output}"], stub_connection, output)
    assert 2 <= len(kept) < 5 and not (output / "manifest.json").exists()
    resumed_at = time.monotonic()  # the killed try's request in flight arrived before this

    ovh_stub.latency = 0.0
    dag_run = run_job(
        "chat_resume",
        input_file=source,
        output_uri=f"file://{output}",
        part_size=2,
        max_concurrency=2,
        messages=[{"role": "user", "content": "{{ item.text }}"}],
    )

    assert task_states(dag_run) == {"classify": "success"}
    manifest = xcom_value(dag_run, "classify")
    assert (manifest["resumed_parts"], manifest["count"], len(manifest["parts"])) == (len(kept), 10, 5)
    assert manifest["requests"] == 10 - 2 * len(kept)
    assert {p.name: p.read_bytes() for p in output.glob("part-*.jsonl") if p.name in kept} == kept  # untouched
    resent = sorted(r.body["messages"][0]["content"] for r in chat_posts(ovh_stub) if r.at >= resumed_at)
    # Parts commit in any order (workers finish items in any order): the resent items are exactly
    # those of the parts not committed, whichever they were.
    kept_parts = {int(name[5:11]) for name in kept}
    assert resent == sorted(d["text"] for i, d in enumerate(docs) if i // 2 not in kept_parts)
    rows = [json.loads(line) for part in sorted(output.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
    assert [r["item_index"] for r in rows] == list(range(10))  # every item exactly once
    assert [r["content"] for r in rows] == [f"Echo from {MODEL}: {d['text']}" for d in docs]

"""A chat step over many items in one task (chat at volume) declared in YAML: items from `input_file`
(a path relative to the pipeline file, or a URI) or from `for_each` with `for_each_mode: in_task`,
messages rendered per item with `item` / `item_index` and the rest of the context (`params`, `steps`),
results to `output` (parts + manifest) or to XCom, read by later steps as `steps.<id>.output`,
`.contents` and `.jsons`; `validate` refuses what cannot apply, at its key."""

from __future__ import annotations

import json

import pytest
from conftest import run_dag, task_states, xcom_value

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.factory.mapping import operator_name
from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text

FILE_PIPELINE = """\
schedule: null
params: {{team: support}}
steps:
  classify:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    input_file: tickets.jsonl
    id_field: ticket
    output: "{output}"
    part_size: 2
    max_concurrency: 3
    requests_per_minute: 6000
    output_schema: {{type: object, properties: {{label: {{enum: [bug, other]}}}}, required: [label]}}
    messages:
      - {{role: system, content: "Classify for {{{{ params.team }}}}."}}
      - {{role: user, content: "{{{{ item_index }}}} {{{{ item.ticket }}}}: {{{{ item.text }}}}"}}
  report:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{{role: user, content: "Labels are in {{{{ steps.classify.output }}}}"}}]
"""


def _chat_requests(stub):
    return [request.body for request in stub.requests if request.path.endswith("/chat/completions")]


def test_a_chat_step_over_a_file_runs_in_one_task_and_writes_parts(airflow_db, stub, tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    tickets = [{"ticket": f"T-{n}", "text": f"printer {n} is broken"} for n in range(5)]
    (folder / "tickets.jsonl").write_text("".join(json.dumps(ticket) + "\n" for ticket in tickets))
    output = tmp_path / "labels"
    pipeline = parse_pipeline_text(FILE_PIPELINE.format(output=f"file://{output}/"), str(folder / "classify.yaml"))
    assert operator_name(pipeline.step("classify")) == "OVHCloudAIEndpointsChatJobOperator"
    dag = build_dag(pipeline)
    assert sorted(dag.task_ids) == ["classify", "report"]  # one task for the five items, nothing mapped
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    manifest = xcom_value(dag_run, "classify")
    assert manifest["count"] == 5 and len(manifest["parts"]) == 3 and manifest["failed"] == 0
    rows = [json.loads(line) for part in sorted(output.glob("part-*")) for line in part.read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"T-{n}" for n in range(5)]
    assert all(row["json"]["label"] in ("bug", "other") and row["error"] is None for row in rows)
    requests = _chat_requests(stub)
    prompts = sorted(body["messages"][1]["content"] for body in requests if len(body["messages"]) == 2)
    assert prompts == sorted(f"{n} T-{n}: printer {n} is broken" for n in range(5))
    assert all(
        body["messages"][0]["content"] == "Classify for support." for body in requests if len(body["messages"]) == 2
    )
    [report] = [body for body in requests if len(body["messages"]) == 1]
    assert report["messages"][0]["content"] == f"Labels are in {manifest['output']}"


IN_TASK_PIPELINE = """\
schedule: null
params:
  topics: {type: array, default: [Airflow, YAML, Embeddings]}
steps:
  explain:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    for_each: "{{ params.topics }}"
    for_each_mode: in_task
    requests_per_minute: 6000
    messages: [{role: user, content: "Explain {{ item }} ({{ item_index }})."}]
  summary:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: "Summarise: {{ steps.explain.contents | join(' / ') }}"}]
"""


def test_for_each_in_task_runs_the_list_in_one_task_and_later_steps_read_contents(airflow_db, stub):
    dag = build_dag(parse_pipeline_text(IN_TASK_PIPELINE, "/pipelines/explain.yaml"))
    assert sorted(dag.task_ids) == ["explain", "summary"]  # no items task, no mapped task
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    rows = xcom_value(dag_run, "explain")["data"]
    assert [row["item_index"] for row in rows] == [0, 1, 2]
    requests = _chat_requests(stub)
    asked = sorted(
        body["messages"][0]["content"] for body in requests if body["messages"][0]["content"].startswith("Explain")
    )
    assert asked == ["Explain Airflow (0).", "Explain Embeddings (2).", "Explain YAML (1)."]
    [summary] = [body for body in requests if body["messages"][0]["content"].startswith("Summarise")]
    assert summary["messages"][0]["content"] == "Summarise: " + " / ".join(row["content"] for row in rows)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "    for_each: [a, b]\n    input_file: x.jsonl\n",
            "chat step 'ask' has both input_file and for_each",
        ),
        ("    for_each_mode: in_task\n", "step 'ask' sets for_each_mode but has no for_each"),
        (
            "    for_each: [a, b]\n    for_each_mode: in_task\n    max_parallel: 2\n",
            "'max_parallel' of step 'ask' bounds mapped task instances",
        ),
        ("    output: file:///tmp/out/\n", "'output' of step 'ask' only applies when its items run in one task"),
        ("    for_each: [a, b]\n    on_item_error: fail\n", "'on_item_error' of step 'ask' only applies when"),
        ("    input_file: x.jsonl\n    part_size: 10\n", "'part_size' of step 'ask' only applies with output"),
        ("    input_file: x.jsonl\n    on_item_error: sometimes\n", "'on_item_error' of step 'ask' must be one of"),
        (
            "    input_file: x.jsonl\n    mode: batch\n    part_size: 5\n",
            "'part_size' does not apply to step 'ask' in mode: batch",
        ),
    ],
)
def test_validate_refuses_what_cannot_apply_at_its_key(step: str, expected: str):
    text = (
        "steps:\n  ask:\n    type: chat\n    model: m\n    messages: [{role: user, content: 'hi {{ item }}'}]\n" + step
    )
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    found = [error.format() for error in caught.value.errors]
    assert any(expected in line for line in found), found
    [error] = [error for error in caught.value.errors if expected in error.format()]
    key = expected.split("'")[1] if expected.startswith("'") else None
    if key:  # positioned at the key it names
        assert text.splitlines()[error.line - 1].strip().startswith(key + ":"), (error.line, text)


def test_a_chat_step_over_a_file_may_read_item_and_later_steps_read_jsons():
    text = (
        "steps:\n  ask:\n    type: chat\n    model: m\n    input_file: x.jsonl\n"
        "    output_schema: {type: object, properties: {a: {type: string}}, required: [a]}\n"
        "    messages: [{role: user, content: '{{ item.text }}'}]\n"
        "  next:\n    type: chat\n    model: m\n    messages: [{role: user, content: '{{ steps.ask.jsons }}'}]\n"
    )
    assert parse_pipeline_text(text, "p.yaml").step("ask").runs_in_task
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text.replace("steps.ask.jsons", "steps.ask.content"), "p.yaml")
    [error] = caught.value.errors
    assert "steps.ask.contents" in error.format()  # the hint: a chat job's answers are a list


def test_render_shows_the_chat_job_operator_and_its_items(tmp_path, capsys):
    from ovh_ai_dagfactory.cli.main import main

    path = tmp_path / "explain.yaml"
    path.write_text(IN_TASK_PIPELINE)
    assert main(["render", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  explain: OVHCloudAIEndpointsChatJobOperator\n" in out
    assert "    one task over the items (items below): one request per item, messages rendered per item\n" in out
    assert "    items: {{ params.topics }}\n" in out and "mapped task" not in out

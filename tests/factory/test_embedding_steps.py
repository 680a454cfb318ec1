"""An embedding step's volume settings in YAML (`batch_size`, `max_concurrency`, `requests_per_minute`)
reach the provider's operator: a long input goes out as several requests and comes back in order."""

from __future__ import annotations

import json

import pytest
from conftest import run_dag, task_states, xcom_value

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text

PIPELINE = """\
schedule: null
params:
  texts: {type: array, default: [one, two, three, four, five]}
defaults:
  embedding: {model: BGE-M3, max_concurrency: 2, requests_per_minute: 6000}
steps:
  batched:
    type: embedding
    batch_size: 2
    input: "{{ params.texts }}"
  whole:
    type: embedding
    input: "{{ params.texts }}"
"""


def test_batch_size_splits_the_input_and_keeps_its_order(airflow_db, stub):
    dag = build_dag(parse_pipeline_text(PIPELINE, "/pipelines/volume.yaml"))
    batched = dag.get_task("batched")
    assert (batched.batch_size, batched.max_concurrency, batched.requests_per_minute) == (2, 2, 6000)
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    inputs = sorted(request.body["input"] for request in stub.requests if request.path.endswith("/embeddings"))
    assert inputs == sorted([["one", "two"], ["three", "four"], ["five"], ["one", "two", "three", "four", "five"]])
    split, whole = xcom_value(dag_run, "batched"), xcom_value(dag_run, "whole")
    assert [item["index"] for item in split["data"]] == [0, 1, 2, 3, 4]
    assert [item["embedding"] for item in split["data"]] == [item["embedding"] for item in whole["data"]]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    batch_size: 0", "'batch_size' of step 'batched' must be at least 1, got 0"),
        ("    requests_per_minute: 0", "'requests_per_minute' of step 'batched' must be more than 0, got 0"),
    ],
)
def test_validate_checks_the_volume_settings(line: str, expected: str):
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(PIPELINE.replace("    batch_size: 2", line), "p.yaml")
    assert expected in caught.value.errors[0].format()


CORPUS_PIPELINE = """\
schedule: null
steps:
  embed:
    type: embedding
    model: BGE-M3
    input_file: "{corpus}"
    id_field: id
    output: "{output}"
    batch_size: 2
  report:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{{role: user, content: "Vectors are in {{{{ steps.embed.output }}}}"}}]
"""


def test_a_corpus_file_is_embedded_to_storage_and_later_steps_read_the_uri(airflow_db, stub, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{n}", "text": f"text {n}"}) + "\n" for n in range(5)))
    output = tmp_path / "vectors"
    text = CORPUS_PIPELINE.format(corpus=f"file://{corpus}", output=f"file://{output}/")
    dag_run = run_dag(build_dag(parse_pipeline_text(text, "/pipelines/corpus.yaml")))
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    manifest = xcom_value(dag_run, "embed")
    assert manifest["count"] == 5 and len(manifest["parts"]) == 3  # batches of 2: parts 0, 1, 2
    written = [json.loads(line) for part in sorted(output.glob("part-*")) for line in part.read_text().splitlines()]
    assert [row["id"] for row in written] == [f"doc-{n}" for n in range(5)]
    [chat] = [request.body for request in stub.requests if request.path.endswith("/chat/completions")]
    assert chat["messages"][0]["content"] == f"Vectors are in {manifest['output']}"
    assert str(output) in manifest["output"]


def test_texts_come_from_input_or_input_file_not_both():
    both = "steps:\n  embed: {type: embedding, model: BGE-M3, input: x, input_file: 'file:///c.jsonl'}\n"
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(both, "p.yaml")
    assert [error.message for error in caught.value.errors] == ["embedding step 'embed' has both input and input_file"]
    lonely = "steps:\n  embed: {type: embedding, model: BGE-M3, input: x, text_field: t}\n"
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(lonely, "p.yaml")
    assert [error.message for error in caught.value.errors] == [
        "'text_field' of step 'embed' only applies with input_file"
    ]

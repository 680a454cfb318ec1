"""Embeddings at volume (issue 10), object storage: `input_file` (JSON Lines or .txt) read as a
stream, vectors written under `output` in parts committed atomically, XCom gets a manifest, and a
retried try keeps the parts an earlier (killed) try wrote. Real files (file://, Airflow's
ObjectStoragePath), real HTTP to the OVH-like stub, through Airflow where the operator is concerned.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime

import pytest
from ovh_stub import _embeddings

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsEmbeddingOperator
from provider.conftest import dag_id
from provider.shared import TEST_TOKEN, killed_after_parts, run_dag, task_states, write_jsonl, xcom_value

pytestmark = pytest.mark.usefixtures("stub_connection")

RECORDS = [{"id": f"doc-{i}", "body": f"paragraph {i} of the knowledge base", "lang": "en"} for i in range(10)]


def _posts(stub):
    return [r for r in stub.requests if r.method == "POST" and r.path.endswith("/embeddings")]


def _rows(directory):
    rows = []
    for part in sorted(directory.glob("part-*.jsonl")):
        rows += [json.loads(line) for line in part.read_text().splitlines()]
    return rows


def _vector(text):
    return _embeddings("BGE-M3", [text])["data"][0]["embedding"]


def _logs(capfd, caplog):
    out, err = capfd.readouterr()
    return out + err + caplog.text


def test_a_jsonl_file_is_embedded_into_parts_and_xcom_gets_the_manifest(airflow_db, ovh_stub, tmp_path, capfd, caplog):
    source = write_jsonl(tmp_path / "corpus.jsonl", RECORDS)
    output = tmp_path / "vectors"
    with DAG(dag_id=dag_id("embed_files"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="embed_corpus",
            model="BGE-M3",
            input_file=source,
            text_field="body",
            id_field="id",
            output_uri=f"file://{output}/",
            batch_size=4,
            max_concurrency=2,
            requests_per_minute=None,
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed_corpus": "success"}
    manifest = xcom_value(dag_run, "embed_corpus")
    tokens = sum(len(r["body"].split()) for r in RECORDS)
    assert manifest == {
        **manifest,
        "output": f"file://{output}/",
        "format": "jsonl",
        "parts": ["part-000000.jsonl", "part-000001.jsonl", "part-000002.jsonl"],
        "count": 10,
        "dimensions": 1024,
        "model": "BGE-M3",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "resumed_parts": 0,
        "requests": 3,
    }
    assert manifest["duration_seconds"] > 0
    assert json.loads((output / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in output.iterdir()) == ["_job.json", "manifest.json", *manifest["parts"]]

    rows = _rows(output)
    assert [r["index"] for r in rows] == list(range(10))
    assert [r["id"] for r in rows] == [r["id"] for r in RECORDS]
    assert [r["text_sha256"] for r in rows] == [hashlib.sha256(r["body"].encode()).hexdigest() for r in RECORDS]
    assert [r["embedding"] for r in rows] == [_vector(r["body"]) for r in RECORDS]
    assert sorted(len(r.body["input"]) for r in _posts(ovh_stub)) == [2, 4, 4]

    logs = _logs(capfd, caplog)
    assert "Embedding done: 10/10 texts (100.0%), 3 requests, " in logs
    assert TEST_TOKEN not in logs and TEST_TOKEN not in json.dumps(manifest)
    assert TEST_TOKEN not in "".join(p.read_text() for p in output.iterdir())


def test_a_txt_file_is_one_text_per_line_and_without_output_the_vectors_go_to_xcom(airflow_db, ovh_stub, tmp_path):
    lines = ["first line", "", "second line", "third line", "fourth line"]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with DAG(dag_id=dag_id("embed_txt"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="to_xcom", model="BGE-M3", input_file=f"file://{tmp_path}/lines.txt", batch_size=2
        )
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="to_files",
            model="BGE-M3",
            input_file=f"file://{tmp_path}/lines.txt",
            output_uri=f"file://{tmp_path}/out",
            batch_size=2,
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"to_xcom": "success", "to_files": "success"}
    texts = [line for line in lines if line]
    response = xcom_value(dag_run, "to_xcom")
    assert [d["index"] for d in response["data"]] == [0, 1, 2, 3]
    assert [d["embedding"] for d in response["data"]] == [_vector(t) for t in texts]
    # A blank line is skipped; the id of a text of a .txt file is its line number.
    assert [(r["index"], r["id"]) for r in _rows(tmp_path / "out")] == [(0, 1), (1, 3), (2, 4), (3, 5)]


_KILLED_TRY = """
import json, sys
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
OVHCloudAIEndpointsHook().embed_to_storage(
    "BGE-M3", sys.argv[2], input_file=sys.argv[1], text_field="body", id_field="id",
    batch_size=2, max_concurrency=1, requests_per_minute=None,
)
"""


def test_a_retried_try_keeps_the_parts_a_killed_try_wrote(airflow_db, ovh_stub, stub_connection, tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", RECORDS)
    output = tmp_path / "vectors"
    ovh_stub.latency = 0.3
    # A first try, killed (SIGKILL: no cleanup of any kind) once it has committed two parts.
    kept = killed_after_parts(_KILLED_TRY, [source, f"file://{output}"], stub_connection, output)
    assert 2 <= len(kept) < 5 and not (output / "manifest.json").exists()
    resumed_at = time.monotonic()  # the killed try's request in flight arrived before this

    ovh_stub.latency = 0.0
    with DAG(dag_id=dag_id("embed_resume"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="embed_corpus",
            model="BGE-M3",
            input_file=source,
            text_field="body",
            id_field="id",
            output_uri=f"file://{output}",
            batch_size=2,
            max_concurrency=1,
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"embed_corpus": "success"}
    manifest = xcom_value(dag_run, "embed_corpus")
    assert manifest["resumed_parts"] == len(kept) and manifest["count"] == 10 and len(manifest["parts"]) == 5
    assert manifest["dimensions"] == 1024
    assert {p.name: p.read_bytes() for p in output.glob("part-*.jsonl") if p.name in kept} == kept  # untouched
    resent = [t for r in _posts(ovh_stub) if r.at >= resumed_at for t in r.body["input"]]
    assert resent == [r["body"] for r in RECORDS[2 * len(kept) :]]  # only the batches not written yet
    rows = _rows(output)
    assert [r["index"] for r in rows] == list(range(10))
    assert [r["embedding"] for r in rows] == [_vector(r["body"]) for r in RECORDS]


def test_an_output_of_another_job_is_refused_naming_what_changed(ovh_stub, tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", RECORDS)
    hook = OVHCloudAIEndpointsHook()
    hook.embed_to_storage("BGE-M3", f"file://{tmp_path}/out", input_file=source, text_field="body", batch_size=4)
    with pytest.raises(InvalidRequestError) as caught:
        hook.embed_to_storage("BGE-M3", f"file://{tmp_path}/out", input_file=source, text_field="body", batch_size=5)
    assert str(caught.value).startswith(
        f"Invalid request: output file://{tmp_path}/out holds the parts of another embedding job (batch_size changed"
    )
    # The same job again: every part kept, nothing sent.
    sent = len(_posts(ovh_stub))
    again = hook.embed_to_storage(
        "BGE-M3", f"file://{tmp_path}/out", input_file=source, text_field="body", batch_size=4
    )
    assert len(_posts(ovh_stub)) == sent
    assert (again["resumed_parts"], again["count"], again["dimensions"], again["requests"]) == (3, 10, 1024, 0)


def test_a_line_without_the_text_field_is_named(ovh_stub, tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", [*RECORDS[:3], {"id": "x", "text": "wrong field"}])
    with pytest.raises(InvalidRequestError) as caught:
        OVHCloudAIEndpointsHook().embed_to_storage(
            "BGE-M3", f"file://{tmp_path}/out", input_file=source, text_field="body"
        )
    assert str(caught.value) == (
        f"Invalid request: {source} line 4 has no text in field 'body' (text_field); its fields: 'id', 'text'."
    )
    assert _posts(ovh_stub) == []  # the input is read (and checked) before any request


def test_the_operator_needs_input_or_input_file():
    with pytest.raises(InvalidRequestError, match="give either `input` .* or `input_file`"):
        OVHCloudAIEndpointsEmbeddingOperator(task_id="neither", model="BGE-M3")
    with pytest.raises(InvalidRequestError, match="give either `input` .* or `input_file`"):
        OVHCloudAIEndpointsEmbeddingOperator(task_id="both", model="BGE-M3", input=["a"], input_file="file:///x")

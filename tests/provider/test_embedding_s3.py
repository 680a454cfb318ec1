"""Embeddings at volume (issue 10) on an S3-compatible store: the same streaming, parts, manifest and
resume as on file://, against moto's S3 server on 127.0.0.1 (a real HTTP S3 API, in this process's
threads), read and written by the client users have: Airflow's amazon provider (an `aws` connection
with an `endpoint_url`), which gives ObjectStoragePath the s3:// scheme through s3fs / aiobotocore.
Through Airflow (`dag.test()`), from Python and from a YAML pipeline.

Needs the `s3` extra (installed by .ci/test and .ci/run on both Airflow lines); without it the module
is skipped, unless OVH_AI_S3_TESTS=require (set by .ci/run): then it fails.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

if os.environ.get("OVH_AI_S3_TESTS") != "require":
    for _module in ("moto.server", "s3fs", "airflow.providers.amazon"):
        pytest.importorskip(_module, reason="the s3 extra is not installed")

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from ovh_stub import _embeddings  # noqa: E402

from ovh_ai_dagfactory.compat import DAG  # noqa: E402
from ovh_ai_dagfactory.factory.builder import build_dag  # noqa: E402
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsEmbeddingOperator  # noqa: E402
from ovh_ai_dagfactory.spec import parse_pipeline_text  # noqa: E402
from provider.conftest import dag_id  # noqa: E402
from provider.shared import TEST_TOKEN, run_dag, task_states, xcom_value  # noqa: E402

pytestmark = pytest.mark.usefixtures("stub_connection")

S3_CONN_ID = "s3_on_loopback"
RECORDS = [{"id": f"doc-{i}", "body": f"paragraph {i} of the knowledge base"} for i in range(10)]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A new bucket on the S3 server, and the Airflow connection `s3_on_loopback` to it (env form)."""
    keys = {"aws_access_key_id": "moto-key", "aws_secret_access_key": "moto-secret", "region_name": "us-east-1"}
    connection = {
        "conn_type": "aws",
        "login": keys["aws_access_key_id"],
        "password": keys["aws_secret_access_key"],
        "extra": {"endpoint_url": s3_endpoint, "region_name": keys["region_name"]},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps(connection))
    client = boto3.client("s3", endpoint_url=s3_endpoint, **keys)
    name = f"kb-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    client.put_object(
        Bucket=name, Key="corpus/texts.jsonl", Body="".join(json.dumps(record) + "\n" for record in RECORDS)
    )
    client.bucket_name = name
    yield client


def _objects(bucket: Any, prefix: str) -> dict[str, bytes]:
    listed = bucket.list_objects_v2(Bucket=bucket.bucket_name, Prefix=prefix).get("Contents", [])
    return {
        item["Key"][len(prefix) :]: bucket.get_object(Bucket=bucket.bucket_name, Key=item["Key"])["Body"].read()
        for item in listed
    }


def _rows(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    return [
        json.loads(line) for name in sorted(objects) if name.startswith("part-") for line in objects[name].splitlines()
    ]


def _embedding_requests(stub: Any) -> list[list[str]]:
    return [r.body["input"] for r in stub.requests if r.method == "POST" and r.path.endswith("/embeddings")]


def _embed_dag(name: str, output: str) -> Any:
    with DAG(dag_id=dag_id(name), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsEmbeddingOperator(
            task_id="embed_corpus",
            model="BGE-M3",
            input_file=f"s3://{output.split('/')[2]}/corpus/texts.jsonl",
            input_conn_id=S3_CONN_ID,
            text_field="body",
            id_field="id",
            output_uri=output,
            output_conn_id=S3_CONN_ID,
            batch_size=4,
            max_concurrency=2,
        )
    return dag


def test_a_corpus_on_s3_is_embedded_into_parts_on_s3_and_a_retry_resumes_there(airflow_db, ovh_stub, bucket):
    output = f"s3://{bucket.bucket_name}/vectors/run-1/"
    dag_run = run_dag(_embed_dag("embed_s3", output))

    assert task_states(dag_run) == {"embed_corpus": "success"}
    manifest = xcom_value(dag_run, "embed_corpus")
    parts = ["part-000000.jsonl", "part-000001.jsonl", "part-000002.jsonl"]
    assert (manifest["output"], manifest["parts"], manifest["count"]) == (output, parts, 10)
    assert manifest["resumed_parts"] == 0 and manifest["requests"] == 3
    stored = _objects(bucket, "vectors/run-1/")
    # Only the committed objects: the temporary names of the atomic writes are gone.
    assert sorted(stored) == ["_job.json", "manifest.json", *parts]
    assert json.loads(stored["manifest.json"]) == manifest
    rows = _rows(stored)
    assert [(r["index"], r["id"]) for r in rows] == [(i, f"doc-{i}") for i in range(10)]
    assert [r["embedding"] for r in rows] == [
        _embeddings("BGE-M3", [r["body"]])["data"][0]["embedding"] for r in RECORDS
    ]
    assert all(TEST_TOKEN.encode() not in content for content in stored.values())

    # A retry of the same job after a part was lost (deleted): only that batch is embedded again.
    bucket.delete_object(Bucket=bucket.bucket_name, Key="vectors/run-1/part-000001.jsonl")
    before = len(_embedding_requests(ovh_stub))
    retried = run_dag(_embed_dag("embed_s3_retry", output))

    assert task_states(retried) == {"embed_corpus": "success"}
    again = xcom_value(retried, "embed_corpus")
    assert (again["resumed_parts"], again["requests"], again["parts"]) == (2, 1, parts)
    assert _embedding_requests(ovh_stub)[before:] == [[r["body"] for r in RECORDS[4:8]]]
    assert _rows(_objects(bucket, "vectors/run-1/")) == rows


PIPELINE = """\
schedule: null
start_date: 2024-01-01
steps:
  embed_corpus:
    type: embedding
    model: BGE-M3
    input_file: "s3://{bucket}/corpus/texts.jsonl"
    input_conn_id: {conn}
    text_field: body
    id_field: id
    output: "s3://{bucket}/vectors/{{{{ ds }}}}/"
    output_conn_id: {conn}
    batch_size: 3
  report:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages:
      - {{role: user, content: "Vectors are in {{{{ steps.embed_corpus.output }}}}"}}
"""


def test_a_yaml_pipeline_reads_and_writes_s3_through_its_connections(airflow_db, ovh_stub, bucket):
    text = textwrap.dedent(PIPELINE.format(bucket=bucket.bucket_name, conn=S3_CONN_ID))
    dag = build_dag(parse_pipeline_text(text, "/pipelines/embed_s3.yaml"))
    dag_run = run_dag(dag, logical_date=datetime(2024, 6, 1, tzinfo=timezone.utc))

    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    output = f"s3://{bucket.bucket_name}/vectors/2024-06-01/"
    assert xcom_value(dag_run, "embed_corpus")["output"] == output
    stored = _objects(bucket, "vectors/2024-06-01/")
    assert [r["id"] for r in _rows(stored)] == [r["id"] for r in RECORDS]
    assert sorted(len(batch) for batch in _embedding_requests(ovh_stub)) == [1, 3, 3, 3]
    chat = [r.body for r in ovh_stub.requests if r.path.endswith("/chat/completions")]
    assert chat[0]["messages"][0]["content"] == f"Vectors are in {output}"

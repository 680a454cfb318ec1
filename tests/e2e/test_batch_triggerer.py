"""The batch operator under a real Airflow with a real `airflow triggerer` (issue 11): the task
submits a batch to the batch stub (tests/ovh_batch_stub.py, in this process, on 127.0.0.1), defers,
the triggerer process polls it with the async client, the task resumes and pushes the responses in
input order. The token is in no service or task log.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ovh_batch_stub import OVHBatchStub

from e2e.airflow_services import AirflowServices, Deadline

pytestmark = pytest.mark.e2e

TOKEN = "sk-e2e-batch-7d3f0a9c2b"
CONN_ID = "ovh_ai_endpoints_default"
MODEL = "Meta-Llama-3_3-70B-Instruct"
DAG_ID = "e2e_batch_triggerer"
QUESTIONS = [f"question {i}" for i in range(5)]
DAG_FILE = f'''
"""A batch of chat requests, deferred to the triggerer (airflow dag)."""
from datetime import datetime

from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.operators.batch import OVHCloudAIEndpointsBatchOperator

with DAG(dag_id="{DAG_ID}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    OVHCloudAIEndpointsBatchOperator(
        task_id="batch",
        kind="chat",
        model="{MODEL}",
        inputs=[[{{"role": "user", "content": q}}] for q in {QUESTIONS!r}],
        poll_interval=1.0,
        max_poll_interval=2.0,
    )
'''


@pytest.fixture(scope="module")
def stub() -> Iterator[OVHBatchStub]:
    with OVHBatchStub(token=TOKEN) as server:
        server.polls_per_status = 2
        yield server


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, stub: OVHBatchStub) -> Iterator[AirflowServices]:
    dags = tmp_path_factory.mktemp("batch-dags")
    (dags / "batch_dag.py").write_text(DAG_FILE)
    conn = {"conn_type": "ovhcloud_ai_endpoints", "host": stub.base_url, "password": TOKEN}
    services = AirflowServices(
        dags,
        extra_env={f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn)},
        keep_home=True,
        deadline=Deadline(240),
        with_triggerer=True,
    )
    try:
        with services:
            yield services
    finally:
        shutil.rmtree(services.home, ignore_errors=True)


def test_a_deferred_batch_waits_in_the_real_triggerer(airflow: AirflowServices, stub: OVHBatchStub) -> None:
    deadline = Deadline(180)
    airflow.wait_for_dags([DAG_ID], deadline)
    run = airflow.api.trigger(DAG_ID)
    final = airflow.wait_for_run(DAG_ID, run["dag_run_id"], deadline)
    assert final["state"] == "success", airflow.logs()

    responses = airflow.api.xcom(DAG_ID, run["dag_run_id"], "batch")
    assert [r["choices"][0]["message"]["content"] for r in responses] == [f"Echo from {MODEL}: {q}" for q in QUESTIONS]
    polls = [r for r in stub.requests if r.method == "GET" and r.path.endswith("/batches/batch_0001")]
    # Every poll came from the async client: the triggerer's, not a worker's.
    assert polls and all(r.headers.get("x-stainless-async", "false") != "false" for r in polls)
    assert TOKEN not in stub.uploads[0]["filename"]
    assert TOKEN not in _all_logs(airflow.home)


def _all_logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in home.rglob("*.log") if p.is_file())

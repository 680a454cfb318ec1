"""OVHCloudAIEndpointsBatchTrigger on its own (run with asyncio against the batch stub over real
HTTP), its serialization (no token in its kwargs, Airflow's round trip), and cancellation: the
trigger's on_kill, the operator's on_kill after it started a batch, and a wait past its deadline.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from datetime import datetime

import pytest

from ovh_ai_dagfactory.calls.errors import UnauthorizedError
from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.operators.batch import OVHCloudAIEndpointsBatchOperator
from ovh_ai_dagfactory.triggers.batch import OVHCloudAIEndpointsBatchTrigger, error_from_payload
from provider import batch_fixtures
from provider.conftest import set_env_connection
from provider.shared import CONN_ID, TEST_TOKEN

batch_stub_server = batch_fixtures.batch_stub_server
batch_stub = batch_fixtures.batch_stub
MODEL = "Meta-Llama-3_3-70B-Instruct"


def _trigger(batch_id="batch_0001", deadline=None, **kwargs):
    deadline = time.time() + 60 if deadline is None else deadline
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("max_poll_interval", 0.02)
    return OVHCloudAIEndpointsBatchTrigger(batch_id=batch_id, ovh_conn_id=CONN_ID, deadline=deadline, **kwargs)


def _first_event(trigger):
    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(first())


class _TaskInstance:
    """What the operator reads of the task instance when it submits: ids and xcom_push."""

    dag_id, task_id, run_id, map_index = "kill_dag", "batch", "manual__2024-01-01T00:00:00+00:00", -1

    def __init__(self):
        self.xcom = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def _submitted_operator(**kwargs):
    """An operator that has uploaded its file and created its batch (then asked to defer)."""
    with DAG(dag_id="kill_dag", start_date=datetime(2024, 1, 1), schedule=None):
        operator = OVHCloudAIEndpointsBatchOperator(
            task_id="batch", kind="chat", model=MODEL, inputs=[[{"role": "user", "content": "hello"}]], **kwargs
        )
    ti = _TaskInstance()
    with pytest.raises(BaseException) as deferred:  # TaskDeferred (not an Exception on 3.x)
        operator.execute({"ti": ti})
    assert type(deferred.value).__name__ == "TaskDeferred"
    return operator, ti, deferred.value


def test_serialize_round_trips_and_holds_the_connection_id_not_the_token(batch_stub):
    trigger = _trigger(deadline=1_800_000_000.0, poll_interval=30.0, max_poll_interval=300.0)
    classpath, kwargs = trigger.serialize()

    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "batch_id": "batch_0001",
        "ovh_conn_id": CONN_ID,
        "deadline": 1_800_000_000.0,
        "poll_interval": 30.0,
        "max_poll_interval": 300.0,
    }
    assert TEST_TOKEN not in json.dumps(kwargs)
    # As Airflow stores a deferred task's trigger kwargs (3.x and 2.11 share this serializer).
    from airflow.serialization.serialized_objects import BaseSerialization

    stored = BaseSerialization.serialize(kwargs)
    assert TEST_TOKEN not in json.dumps(stored)
    assert BaseSerialization.deserialize(stored) == kwargs


def test_the_deferral_carries_the_trigger_and_no_token(batch_stub):
    operator, ti, deferred = _submitted_operator(poll_interval=5.0)

    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "ovh_ai_dagfactory.triggers.batch.OVHCloudAIEndpointsBatchTrigger"
    assert kwargs["batch_id"] == ti.xcom["batch_id"] == "batch_0001" and kwargs["poll_interval"] == 5.0
    # 24 h window + 1 h grace from now
    assert abs(kwargs["deadline"] - (time.time() + 25 * 3600)) < 60
    assert deferred.method_name == "execute_complete" and deferred.kwargs == {"count": 1}
    assert TEST_TOKEN not in json.dumps([kwargs, deferred.kwargs, ti.xcom])


def test_the_trigger_polls_until_completed_and_fires_once(batch_stub):
    operator, _, _ = _submitted_operator()

    event = _first_event(_trigger())
    assert event["status"] == "completed" and event["batch_id"] == "batch_0001"
    assert event["batch"]["output_file_id"] and event["batch"]["request_counts"]["completed"] == 1
    statuses = [r for r in batch_stub.requests if r.method == "GET" and r.path.endswith("/batch_0001")]
    assert len(statuses) == 3  # in_progress, finalizing, completed


def test_transient_polling_errors_do_not_end_the_wait(batch_stub, monkeypatch):
    conn = {"conn_type": "ovhcloud_ai_endpoints", "host": batch_stub.base_url, "password": TEST_TOKEN}
    set_env_connection(monkeypatch, {**conn, "extra": {"max_retries": 0}})
    _submitted_operator()
    batch_stub.fail(503, body={"message": "try later"}, times=2)

    assert _first_event(_trigger())["status"] == "completed"


def test_a_fatal_polling_error_ends_the_wait_with_that_error(batch_stub, monkeypatch):
    _submitted_operator()
    conn = {"conn_type": "ovhcloud_ai_endpoints", "host": batch_stub.base_url, "password": "sk-wrong"}
    set_env_connection(monkeypatch, conn)

    event = _first_event(_trigger())
    assert event["status"] == "error"
    error = error_from_payload(event["error"])
    assert type(error) is UnauthorizedError and error.http_status == 401
    assert "sk-wrong" not in json.dumps(event)


def test_a_wait_past_its_deadline_cancels_the_batch(batch_stub):
    _submitted_operator()

    event = _first_event(_trigger(deadline=time.time() - 1))
    assert event["status"] == "timeout"
    assert batch_stub.cancelled == ["batch_0001"]


def test_the_triggers_on_kill_cancels_the_batch(batch_stub):
    _submitted_operator()

    asyncio.run(_trigger().on_kill())
    assert batch_stub.cancelled == ["batch_0001"]
    assert batch_stub.batches["batch_0001"]["status"] == "cancelling"


def test_the_operators_on_kill_cancels_the_batch_it_started(batch_stub):
    operator, _, _ = _submitted_operator()
    assert batch_stub.cancelled == []

    operator.on_kill()
    assert batch_stub.cancelled == ["batch_0001"]
    cancel = [r for r in batch_stub.requests if r.path.endswith("/batches/batch_0001/cancel")]
    assert cancel[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"


def test_on_kill_before_any_batch_does_nothing(batch_stub):
    operator = OVHCloudAIEndpointsBatchOperator(task_id="idle", kind="chat", model=MODEL, inputs=[])
    operator.on_kill()
    assert batch_stub.requests == []

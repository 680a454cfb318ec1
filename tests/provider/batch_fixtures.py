"""Fixtures and helpers of the batch tests (tests/provider/test_batch_*.py): the OVH-like stub with
the Batch API (tests/ovh_batch_stub.py) on 127.0.0.1, a connection to it, and a way to see why a
task failed when Airflow ran it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from ovh_batch_stub import OVHBatchStub

from provider.conftest import set_env_connection
from provider.shared import TEST_TOKEN


@pytest.fixture(scope="session")
def batch_stub_server() -> Iterator[OVHBatchStub]:
    with OVHBatchStub(token=TEST_TOKEN) as stub:
        yield stub


@pytest.fixture
def batch_stub(batch_stub_server: OVHBatchStub, monkeypatch: pytest.MonkeyPatch) -> Iterator[OVHBatchStub]:
    """The batch stub, clean for this test, with `ovh_ai_endpoints_default` pointing at it."""
    batch_stub_server.reset()
    conn = {"conn_type": "ovhcloud_ai_endpoints", "host": batch_stub_server.base_url, "password": TEST_TOKEN}
    set_env_connection(monkeypatch, conn)
    yield batch_stub_server
    batch_stub_server.reset()


def logs_of(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    out, err = capfd.readouterr()
    return out + err + caplog.text


class Failures:
    """An on_failure_callback remembering each failed task's exception (class name and message)."""

    def __init__(self) -> None:
        self.by_task: dict[str, BaseException] = {}

    def __call__(self, context: Any) -> None:
        exception = context.get("exception")
        if exception is not None:
            self.by_task[context["ti"].task_id] = exception


def dumped(value: Any) -> str:
    return json.dumps(value, default=str)

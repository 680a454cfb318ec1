"""Fixtures of the provider tests: the OVH-like stub server and helpers to build seed-style DAGs.

The shared fixtures (`airflow_db`, `llmock`, `ovh_connection`, `run_dag`) live in tests/conftest.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from ovh_stub import OVHStub

from provider.shared import CONN_ID, TEST_TOKEN, point_connection_at

_dag_ids = itertools.count()


@pytest.fixture(scope="session")
def ovh_stub_server() -> Iterator[OVHStub]:
    with OVHStub(token=TEST_TOKEN) as stub:
        yield stub


@pytest.fixture
def ovh_stub(ovh_stub_server: OVHStub) -> Iterator[OVHStub]:
    """The stub, clean for this test (no requests, no scripted faults, anonymous refused)."""
    ovh_stub_server.reset()
    ovh_stub_server.allow_anonymous = False
    yield ovh_stub_server
    ovh_stub_server.reset()


@pytest.fixture
def stub_connection(ovh_stub: OVHStub, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`ovh_ai_endpoints_default` (JSON env form) pointing at the stub, with the expected token."""
    return point_connection_at(monkeypatch, ovh_stub.base_url)


def set_env_connection(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any] | str, conn_id: str = CONN_ID) -> None:
    value = conn if isinstance(conn, str) else json.dumps(conn)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)


def dag_id(name: str) -> str:
    """A dag_id never used before in this session: runs of one test cannot see another's."""
    return f"{name}_{next(_dag_ids)}_{datetime.now().strftime('%H%M%S%f')}"

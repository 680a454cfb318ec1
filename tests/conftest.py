"""Shared fixtures: an Airflow metadata DB in a temporary AIRFLOW_HOME, a way to run a DAG through
Airflow itself (`dag.test()`) on both Airflow lines, and an Airflow connection that points our hook
at the local OpenAI-compatible server (llmock's `llmock` fixture, a real HTTP server on 127.0.0.1).

Airflow reads its configuration when first imported, so the environment is set here, at import
time, before any test module can import Airflow.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Idempotent: test modules may `import conftest` again (pytest runs in importlib mode), which
# must not point Airflow at a second home.
if "OVH_AI_DAGFACTORY_TEST_HOME" not in os.environ:
    os.environ["OVH_AI_DAGFACTORY_TEST_HOME"] = tempfile.mkdtemp(prefix="ovh-ai-dagfactory-tests-")
_AIRFLOW_HOME = Path(os.environ["OVH_AI_DAGFACTORY_TEST_HOME"])
(_AIRFLOW_HOME / "dags").mkdir(exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_AIRFLOW_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.pop("OPENAI_BASE_URL", None)
os.environ.pop("OPENAI_API_KEY", None)

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_TOKEN = "sk-test-4f1c9e0b7a2d5e8c"  # a recognisable fake token: tests assert it never leaks
CONN_ID = "ovh_ai_endpoints_default"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A fresh SQLite metadata DB for the whole session (reset once, ~2-4 s)."""
    from ovh_ai_dagfactory.factory.local_run import reset_metadata_db

    reset_metadata_db()
    return _AIRFLOW_HOME


def _airflow_major() -> int:
    import airflow

    return int(airflow.__version__.split(".")[0])


@pytest.fixture(scope="session")
def airflow_major() -> int:
    return _airflow_major()


def run_dag(dag: Any, logical_date: datetime | None = None) -> Any:
    """Run one DagRun of `dag` through Airflow (`dag.test()`, the DAG stored in the DB first on
    Airflow 3) and return the DagRun."""
    from ovh_ai_dagfactory.factory.local_run import run_dag_once

    return run_dag_once(dag, logical_date or datetime.now(timezone.utc))


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom a task of `dag_run` pushed, read back from the metadata DB."""
    from ovh_ai_dagfactory.factory.local_run import xcom_of

    return xcom_of(dag_run, task_id, key)


def serialized(dag: Any) -> dict[str, Any]:
    """`dag` as Airflow stores it for the scheduler and the UI (the JSON of the serialized DAG)."""
    return json.loads(json.dumps(_dag_serializer().to_dict(dag)))


def round_trip(dag: Any) -> Any:
    """`dag` after Airflow's serialization round trip: what the scheduler and the UI work with."""
    return _dag_serializer().from_dict(serialized(dag))


def _dag_serializer() -> Any:
    # Only tests need Airflow's serializer: the package never serializes a DAG itself (Airflow 3's
    # `run` stores DAGs through `sync_bag_to_db`), so this version difference lives here.
    if _airflow_major() >= 3:
        from airflow.serialization.serialized_objects import DagSerialization

        return DagSerialization
    from airflow.serialization.serialized_objects import SerializedDAG

    return SerializedDAG


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture
def ovh_connection(llmock: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`ovh_ai_endpoints_default` as an env-var connection (JSON form) pointing at llmock.

    llmock's own fixture sets OPENAI_BASE_URL/OPENAI_API_KEY; our hook must ignore them, so they
    stay set on purpose.
    """
    return point_connection_at(monkeypatch, llmock.base_url("openai"))


def point_connection_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> dict[str, Any]:
    """Set `ovh_ai_endpoints_default` (JSON env form) to `base_url` with the test token; returns it."""
    conn = {"conn_type": "ovhcloud_ai_endpoints", "host": base_url, "password": TEST_TOKEN}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return conn


# Test modules import the helpers above with `from conftest import run_dag, ...`, and the small
# stub server with `import ovh_stub`.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

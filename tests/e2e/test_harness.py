"""The harness proven on its own, with a hand-written Python DAG and a broken DAG file: services
start and become healthy, the DAG is listed, the broken file shows up in the import errors, a run
triggered over REST succeeds and its XCom is readable, and every process is gone after `stop()`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e.airflow_services import AirflowServices, Deadline

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent


def test_harness_runs_a_hand_written_dag(tmp_path: Path) -> None:
    deadline = Deadline(180)
    dags = tmp_path / "dags"
    shutil.copytree(HERE / "harness_dags", dags)

    services = AirflowServices(dags, deadline=deadline)
    with services:
        listed, errors = services.wait_for_dags({"e2e_hello"}, deadline, import_error_files={"e2e_broken.py"})
        assert "e2e_hello" in listed
        broken = [e for e in errors if Path(e["filename"]).name == "e2e_broken.py"]
        assert "e2e-broken-marker" in broken[0]["stack_trace"], broken

        run = services.api.trigger("e2e_hello", conf={"from": "harness"})
        final = services.wait_for_run("e2e_hello", run["dag_run_id"], deadline)
        assert final["state"] == "success", services.logs()

        value = services.api.xcom("e2e_hello", run["dag_run_id"], "hello")
        assert value == {"greeting": "hello from a real Airflow", "run_id": run["dag_run_id"], "answer": 42}

        pids = [svc.pid for svc in services.services]
        assert all(
            (services.pid_dir / f"{svc.name}.pid").read_text().strip() == str(svc.pid) for svc in services.services
        )
    # Stopped by PID: no service process, no straggler carrying the harness marker.
    for pid in pids:
        assert not _alive(pid), f"pid {pid} survived stop()"
    assert services._our_pids() == []
    print(
        f"\ne2e harness (Airflow {services.major}.x): start {services.timings}, "
        f"wall {deadline.elapsed():.1f}s, {services.memory.summary()}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped still answers kill(0); check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False

"""The helpers of the root tests/conftest.py (run_dag, xcom_value, task_states, TEST_TOKEN, ...).

`from conftest import ...` is fragile: pytest imports every conftest.py outside a package under the
same module name, so another folder's conftest.py (tests/e2e/) can take `conftest` in sys.modules
before this folder is collected. The root conftest is found by its file instead, without running it
a second time (that would create another AIRFLOW_HOME).
"""

from __future__ import annotations

import gc
import sys
import types
from pathlib import Path

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _root_conftest() -> types.ModuleType:
    def is_root(module: object) -> bool:
        file = getattr(module, "__file__", None)
        return isinstance(module, types.ModuleType) and file is not None and Path(file).resolve() == _ROOT_CONFTEST

    candidate = sys.modules.get("conftest")
    if is_root(candidate):
        return candidate  # type: ignore[return-value]
    for module in gc.get_objects():  # pytest keeps the module registered as a plugin
        if is_root(module):
            return module  # type: ignore[return-value]
    raise ImportError(f"{_ROOT_CONFTEST} is not loaded: run these tests with pytest from the repository")


_shared = _root_conftest()
CONN_ID: str = _shared.CONN_ID
REPO_ROOT: Path = _shared.REPO_ROOT
TEST_TOKEN: str = _shared.TEST_TOKEN
round_trip = _shared.round_trip
run_dag = _shared.run_dag
serialized = _shared.serialized
task_states = _shared.task_states
xcom_value = _shared.xcom_value
point_connection_at = _shared.point_connection_at


def write_jsonl(path: Path, records: list[dict]) -> str:
    """`records` as a JSON Lines file at `path`; its file:// URI."""
    import json

    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return f"file://{path}"


def killed_after_parts(script: str, args: list[str], stub_connection: dict, output: Path, parts: int = 2) -> dict:
    """Run `script` (python -c, with `args`) as a job's first try against the stub connection, and
    SIGKILL it (no cleanup of any kind) once `parts` parts are committed under `output`; returns the
    committed parts' bytes by name. The resume tests of the job engine's kinds share it."""
    import json
    import os
    import subprocess
    import time

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(stub_connection),
    }
    first = subprocess.Popen([sys.executable, "-c", script, *args], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(output.glob("part-*.jsonl"))) < parts and time.monotonic() < deadline:
            assert first.poll() is None, "the first try ended before it could be killed"
            time.sleep(0.02)
    finally:
        first.kill()
        first.wait()
    return {path.name: path.read_bytes() for path in output.glob("part-*.jsonl")}

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

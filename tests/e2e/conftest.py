"""End-to-end tests against a real Airflow (separate scheduler / DAG processor / API server processes).

The `e2e` marker is registered here (not in pyproject) so the folder is self-contained; deselect the
suite with `-m "not e2e"`. The harness lives in `airflow_services.py` next to this file; tests import
it as `from e2e.airflow_services import ...` (tests/ is on sys.path, see tests/conftest.py). This
file must not put tests/e2e itself on sys.path: `from conftest import ...` elsewhere would then
find this conftest instead of tests/conftest.py.
"""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test that starts real Airflow services (scheduler, DAG processor, API server) "
        "as subprocesses on 127.0.0.1; ~30-60 s, ~1 GiB RAM",
    )

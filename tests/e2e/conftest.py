"""End-to-end tests against a real Airflow (separate scheduler / DAG processor / API server processes).

The `e2e` marker is registered here (not in pyproject) so the folder is self-contained; deselect the
suite with `-m "not e2e"`. The harness lives in `airflow_services.py` next to this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test that starts real Airflow services (scheduler, DAG processor, API server) "
        "as subprocesses on 127.0.0.1; ~30-60 s, ~1 GiB RAM",
    )

"""A DAG file that fails to import: the harness must see it in the API's import errors."""

from airflow import DAG  # noqa: F401  (the words "airflow" and "dag" keep safe mode parsing it)

raise RuntimeError("e2e-broken-marker: this DAG file is broken on purpose")

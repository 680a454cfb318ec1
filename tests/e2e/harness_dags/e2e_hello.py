"""A hand-written DAG for the harness self-test: one Python task returning a dict (its XCom)."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3.x
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _hello(**context):
    return {"greeting": "hello from a real Airflow", "run_id": context["run_id"], "answer": 42}


with DAG(dag_id="e2e_hello", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["e2e"]):
    PythonOperator(task_id="hello", python_callable=_hello)

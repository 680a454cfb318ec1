"""Run one pipeline through Airflow on a local SQLite metadata DB (what `ovh-ai-dagfactory run` does).

The caller has pointed AIRFLOW_HOME (and the DB) at a private folder before importing Airflow.
On Airflow 3 a DAG must be serialized into the metadata DB before `dag.test()` can run it; on 2.11
`dag.test()` takes `execution_date`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ovh_ai_dagfactory.compat import (
    AIRFLOW_VERSION,
    AirflowNotFoundException,
    BaseHook,
    reset_metadata_db,
    run_dag_once,
    xcom_of,
)
from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec.model import Pipeline


@dataclass(frozen=True)
class StepOutcome:
    step_id: str
    kind: str
    state: str
    response: Any  # the XCom the step pushed (the response dict), None when it did not succeed
    error: str | None = None  # why it failed, as the task's exception said it


def prepare_metadata_db(home: Path) -> None:
    """Create the local metadata DB once per Airflow version (a marker file remembers it)."""
    marker = home / f".db-ready-{AIRFLOW_VERSION}"
    if marker.exists():
        return
    reset_metadata_db()  # a private DB: starting from a clean schema is the simplest correct migration
    marker.write_text("ok\n")


def connection_exists(conn_id: str) -> bool:
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def run_pipeline(pipeline: Pipeline, logical_date: datetime, *, source_label: str) -> list[StepOutcome]:
    dag = build_dag(pipeline, source_label=source_label)
    errors: dict[str, str] = {}
    for task in dag.tasks:
        # Keep the reason a step failed, to print it next to the step instead of only in the log.
        existing = task.on_failure_callback or []
        existing = list(existing) if isinstance(existing, (list, tuple)) else [existing]
        task.on_failure_callback = [*existing, _remember_failure(errors)]  # a list on both lines
    dag_run = run_dag_once(dag, logical_date)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    outcomes = []
    for step in pipeline.steps:
        state = str(states.get(step.step_id) or "not run")
        response = xcom_of(dag_run, step.step_id) if state == "success" else None
        outcomes.append(StepOutcome(step.step_id, step.kind, state, response, errors.get(step.step_id)))
    return outcomes


def _remember_failure(errors: dict[str, str]) -> Any:
    def remember(context: Any) -> None:
        exception = context.get("exception")
        if exception is not None:
            errors[context["ti"].task_id] = f"{type(exception).__name__}: {exception}"

    return remember

"""Run one pipeline through Airflow on a local SQLite metadata DB (what `ovh-ai-dagfactory run` does).

The caller has pointed AIRFLOW_HOME (and the DB) at a private folder before importing Airflow.
The metadata-DB helpers below (a fresh schema, one DagRun through `dag.test()`, an XCom read back)
are also what the test suite runs DAGs with. They pull in airflow-core's DB layer, which parsing a
DAG file never needs, so they live here rather than in `compat` (which the provider imports).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ovh_ai_dagfactory.compat import AIRFLOW_V3, AIRFLOW_VERSION, AirflowNotFoundException, BaseHook
from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec.fan_out import items_task_id
from ovh_ai_dagfactory.spec.model import Pipeline


@dataclass(frozen=True)
class StepOutcome:
    step_id: str
    kind: str
    state: str
    response: Any  # the XCom the step pushed (the response dict), None when it did not succeed
    error: str | None = None  # why it failed, as the task's exception said it
    items: list[Any] | None = None  # a for_each step's responses in item order (None: not a for_each step)


def prepare_metadata_db(home: Path) -> None:
    """Create the local metadata DB once per Airflow version (a marker file remembers it)."""
    marker = home / f".airflow-{AIRFLOW_VERSION}.db.ready"  # with the DB file `run` names per version
    if marker.exists():
        return
    reset_metadata_db()  # a private DB: starting from a clean schema is the simplest correct migration
    marker.write_text("ok\n")


def prepare_existing_home() -> None:
    """An Airflow home of the user's (AIRFLOW_HOME): its DB is never reset; on Airflow 3 the DAG
    bundles it configures are registered, as its DAG processor would, so a DAG can be stored."""
    if AIRFLOW_V3:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()


def connection_exists(conn_id: str) -> bool:
    """Whether the run's tasks will find `conn_id`: in the environment, a secrets backend or the
    home's metadata DB. On Airflow 3 outside a task, the SDK's BaseHook sees no metadata DB (tasks get
    it through the execution API, which `dag.test()` serves in-process), so the core model is asked."""
    if AIRFLOW_V3:
        from airflow.exceptions import AirflowNotFoundException as NotFound
        from airflow.models.connection import Connection

        try:
            Connection.get_connection_from_secrets(conn_id)
        except NotFound:
            return False
        return True
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def run_pipeline(
    pipeline: Pipeline, logical_date: datetime, *, source_label: str, conf: dict[str, Any] | None = None
) -> list[StepOutcome]:
    dag = build_dag(pipeline, source_label=source_label)
    errors: dict[str, str] = {}
    for task in dag.tasks:
        # Keep the reason a step failed, to print it next to the step instead of only in the log.
        existing = task.on_failure_callback or []
        existing = list(existing) if isinstance(existing, (list, tuple)) else [existing]
        task.on_failure_callback = [*existing, _remember_failure(errors)]  # a list on both lines
    dag_run = run_dag_once(dag, logical_date, conf)
    states: dict[str, list[str]] = {}
    for ti in sorted(dag_run.get_task_instances(), key=lambda ti: ti.map_index):
        states.setdefault(ti.task_id, []).append(str(ti.state))
    outcomes = []
    for step in pipeline.steps:
        error = errors.get(step.step_id) or errors.get(items_task_id(step.step_id))
        found = states.get(step.step_id) or ["not run"]
        if step.for_each is None:
            state = found[0]
            response = xcom_of(dag_run, step.step_id) if state == "success" else None
            outcomes.append(StepOutcome(step.step_id, step.kind, state, response, error))
        else:
            outcomes.append(_mapped_outcome(dag_run, step.step_id, step.kind, found, error))
    return outcomes


def _mapped_outcome(dag_run: Any, step_id: str, kind: str, states: list[str], error: str | None) -> StepOutcome:
    """A for_each step: one state per item; Airflow marks a task mapped over no item skipped."""
    if states == ["skipped"]:
        return StepOutcome(step_id, kind, "success", None, error, items=[])
    done = set(states) == {"success"}
    state = "success" if done else ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    return StepOutcome(step_id, kind, state, None, error, items=xcoms_of(dag_run, step_id) if done else None)


def _remember_failure(errors: dict[str, str]) -> Any:
    def remember(context: Any) -> None:
        exception = context.get("exception")
        if exception is not None:
            errors[context["ti"].task_id] = f"{type(exception).__name__}: {exception}"

    return remember


# --- The metadata DB: shared with the test suite (tests/conftest.py) ------------------------------
def reset_metadata_db() -> None:
    """A fresh schema in the configured (private, local) metadata DB, with the DAG bundles known."""
    from airflow.utils import db

    db.resetdb()
    if AIRFLOW_V3:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()


def run_dag_once(dag: Any, logical_date: datetime, conf: dict[str, Any] | None = None) -> Any:
    """One DagRun of `dag` through `dag.test()`; returns the DagRun.

    Airflow 3 runs only DAGs serialized in the metadata DB, so the DAG is stored first (as the DAG
    processor would); 2.11 takes `execution_date` instead of `logical_date`.
    """
    if AIRFLOW_V3:
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        # A bag of this one DAG: the home's DAG folder (a user's, with AIRFLOW_HOME) is not parsed.
        bag = DagBag(collect_dags=False)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        return dag.test(logical_date=logical_date, run_conf=conf)
    return dag.test(execution_date=logical_date, run_conf=conf)


def xcom_of(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom value a task of `dag_run` pushed, read back from the metadata DB (None if none)."""
    from airflow.utils.session import create_session

    if AIRFLOW_V3:
        from airflow.models.xcom import XComModel

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
                .one_or_none()
            )
            return None if row is None else XComModel.deserialize_value(row)
    from airflow.models.xcom import XCom

    return XCom.get_one(run_id=dag_run.run_id, dag_id=dag_run.dag_id, task_id=task_id, key=key)


def xcoms_of(dag_run: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """The XCom values a mapped task of `dag_run` pushed, in map index order."""
    from airflow.utils.session import create_session

    where = {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "task_id": task_id, "key": key}
    with create_session() as session:
        if AIRFLOW_V3:
            from airflow.models.xcom import XComModel

            rows = session.query(XComModel).filter_by(**where).order_by(XComModel.map_index).all()
            return [XComModel.deserialize_value(row) for row in rows]
        from airflow.models.xcom import XCom

        # 2.11's XCom rows deserialize their value when loaded.
        return [row.value for row in session.query(XCom).filter_by(**where).order_by(XCom.map_index).all()]

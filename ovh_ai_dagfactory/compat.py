"""Every import that differs between Airflow 2.11 and Airflow 3.x, in one place.

Airflow 3 moved DAG authoring to `airflow.sdk`; importing the old paths there warns as deprecated,
and the new paths do not exist on 2.11. Everything else in the package imports Airflow names from
here, so neither line sees a deprecation warning caused by us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import airflow

AIRFLOW_VERSION: str = airflow.__version__
AIRFLOW_V3: bool = int(AIRFLOW_VERSION.split(".")[0]) >= 3

if AIRFLOW_V3:
    from airflow.sdk import DAG, BaseHook, BaseOperator, Context, Param, get_parsing_context
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
    from airflow.sdk.log import mask_secret  # also tells the supervisor process to mask it
else:  # Airflow 2.11
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
    from airflow.hooks.base import BaseHook
    from airflow.models import DAG, BaseOperator
    from airflow.models.param import Param
    from airflow.utils.context import Context
    from airflow.utils.dag_parsing_context import get_parsing_context
    from airflow.utils.log.secrets_masker import mask_secret

__all__ = [
    "AIRFLOW_V3",
    "AIRFLOW_VERSION",
    "DAG",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "BaseHook",
    "BaseOperator",
    "Context",
    "Param",
    "get_parsing_context",
    "mask_secret",
    "reset_metadata_db",
    "run_dag_once",
    "xcom_of",
]


# --- DAG factory: Airflow's DAG serializer (what the scheduler and UI store), imported lazily ---
# It is heavy and never needed while a DAG file is parsed, so it is a function, not an import.
def dag_serializer() -> type:
    """The class whose `to_dict(dag)` / `from_dict(data)` Airflow uses to store DAGs."""
    if AIRFLOW_V3:
        from airflow.serialization.serialized_objects import DagSerialization

        return DagSerialization
    from airflow.serialization.serialized_objects import SerializedDAG

    return SerializedDAG


# --- Running a DAG locally through Airflow (`ovh-ai-dagfactory run`, and the test suite) --------
# Imported lazily: these pull in airflow-core's DB layer, which DAG parsing never needs.
def reset_metadata_db() -> None:
    """A fresh schema in the configured (private, local) metadata DB, with the DAG bundles known."""
    from airflow.utils import db

    db.resetdb()
    if AIRFLOW_V3:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()


def run_dag_once(dag: Any, logical_date: datetime, run_conf: dict[str, Any] | None = None) -> Any:
    """One DagRun of `dag` through `dag.test()`; returns the DagRun.

    Airflow 3 runs only DAGs serialized in the metadata DB, so the DAG is stored first (as the DAG
    processor would); 2.11 takes `execution_date` instead of `logical_date`.
    """
    if AIRFLOW_V3:
        import os

        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        bag = DagBag(dag_folder=os.environ.get("AIRFLOW__CORE__DAGS_FOLDER"))
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        return dag.test(logical_date=logical_date, run_conf=run_conf)
    return dag.test(execution_date=logical_date, run_conf=run_conf)


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

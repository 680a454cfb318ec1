"""Every import that differs between Airflow 2.11 and Airflow 3.x, in one place.

Airflow 3 moved DAG authoring to `airflow.sdk`; importing the old paths there warns as deprecated,
and the new paths do not exist on 2.11. Everything else in the package imports Airflow names from
here, so neither line sees a deprecation warning caused by us.
"""

from __future__ import annotations

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

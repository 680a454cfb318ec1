"""The Airflow 2.11 / 3.x differences the provider and the DAG builder need, in one place.

Airflow 3 moved DAG authoring to `airflow.sdk`; importing the old paths there warns as deprecated,
and the new paths do not exist on 2.11. The provider (hooks, operators) and the builder import
Airflow names from here, so neither line sees a deprecation warning caused by us. Running a DAG
against a metadata DB (`ovh-ai-dagfactory run`, the tests) is not parsing: those helpers live with
`run`, in `factory/local_run.py`.
"""

from __future__ import annotations

from typing import Any

import airflow

AIRFLOW_VERSION: str = airflow.__version__
AIRFLOW_V3: bool = int(AIRFLOW_VERSION.split(".")[0]) >= 3

if AIRFLOW_V3:
    from airflow.sdk import DAG, Asset, BaseHook, BaseOperator, Context, Param, get_parsing_context
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
    from airflow.sdk.log import mask_secret  # also tells the supervisor process to mask it
else:  # Airflow 2.11 (mypy reads Airflow 3, where these names do not exist: ignored below)
    from airflow.datasets import Dataset as Asset  # type: ignore  # data-aware scheduling's 2.11 name
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException  # type: ignore
    from airflow.hooks.base import BaseHook  # type: ignore
    from airflow.models import DAG, BaseOperator  # type: ignore
    from airflow.models.param import Param  # type: ignore
    from airflow.utils.context import Context  # type: ignore
    from airflow.utils.dag_parsing_context import get_parsing_context  # type: ignore
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore

__all__ = [
    "AIRFLOW_V3",
    "AIRFLOW_VERSION",
    "DAG",
    "Asset",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "BaseHook",
    "BaseOperator",
    "Context",
    "Param",
    "airflow_dag_checks",
    "airflow_task_checks",
    "get_parsing_context",
    "is_airflow_refusal",
    "is_policy_skip",
    "mask_secret",
]


# --- DAG factory: what Airflow's DagBag checks on a DAG before it keeps it --------------------------
# A DAG file's DAGs are checked by the DagBag after the file is imported; a DAG that fails files its
# error under the DAG FILE's path (the loader file, flagging all of its DAGs). The loader runs the
# same checks first, per pipeline, so a refused pipeline is reported under its own YAML path.
# Read from airflow/dag_processing/dagbag.py (3.3: process_file, bag_dag) and
# airflow/models/dagbag.py (2.11: _process_modules, _bag_dag). Left out: the executor check (our tasks
# set no executor), `end_from_trigger` (not deferrable), template files (our operators have no
# template_ext), and duplicate dag_ids across files (the loader checks them against the DagBag).
def airflow_dag_checks(dag: Any) -> None:
    """Raise what the DagBag would raise for `dag` itself: `dag.validate()` (timetable/cron, params
    of a scheduled DAG, ...), the cycle check, and the cluster's `dag_policy`."""
    from airflow import settings

    dag.validate()
    if AIRFLOW_V3:
        dag.check_cycle()
    else:
        from airflow.utils.dag_cycle_tester import check_cycle

        check_cycle(dag)
    _apply_policy(settings.dag_policy, dag)


def airflow_task_checks(task: Any) -> None:
    """Raise what the DagBag would raise for one task: the cluster's `task_policy`."""
    from airflow import settings

    _apply_policy(settings.task_policy, task)


def _apply_policy(policy: Any, target: Any) -> None:
    # As the DagBag does: a violation or a skip as such, anything else a policy raises wrapped.
    from airflow.exceptions import (
        AirflowClusterPolicyError,
        AirflowClusterPolicySkipDag,
        AirflowClusterPolicyViolation,
    )

    try:
        policy(target)
    except (AirflowClusterPolicyViolation, AirflowClusterPolicySkipDag):
        raise
    except Exception as exc:
        raise AirflowClusterPolicyError(exc) from exc


def is_policy_skip(exc: BaseException) -> bool:
    """A cluster policy asked to skip the DAG: the DagBag drops it silently, so do we."""
    from airflow.exceptions import AirflowClusterPolicySkipDag

    return isinstance(exc, AirflowClusterPolicySkipDag)


def is_airflow_refusal(exc: BaseException) -> bool:
    """Airflow refusing a pipeline's value (the user's to fix), as opposed to a bug of ours.

    Every AirflowException: AirflowTimetableInvalid, ParamValidationError, AirflowDagCycleException,
    DuplicateTaskIdFound, AirflowClusterPolicyViolation / ...Error, AirflowDagInconsistent (2.11),
    and on 2.11 the DAG constructor's own refusals (dag_id, tags). Plus a ValueError raised inside
    Airflow's code: 3.x's DAG validators (tags, dag_id, catchup, params, max_active_runs) and 2.11's
    DAG constructor (start_date) raise plain ValueError. A ValueError from our code, or any other
    exception, is ours.
    """
    if isinstance(exc, AirflowException):  # on 3.x the core class is the SDK's
        return True
    return isinstance(exc, ValueError) and _raised_inside_airflow(exc)


def _raised_inside_airflow(exc: BaseException) -> bool:
    traceback = exc.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__", "")
    return module == "airflow" or module.startswith("airflow.")


# --- Provider: object storage for embeddings at volume (issue 10) -----------------------------------
# Airflow's ObjectStoragePath (file://, s3://, gcs://... with an Airflow connection). Imported when a
# task reads or writes storage, never at DAG parse: it pulls in fsspec and universal_pathlib.
def object_storage_path(url: str, conn_id: str | None = None) -> Any:
    """`airflow.sdk.ObjectStoragePath` on Airflow 3, `airflow.io.path.ObjectStoragePath` on 2.11."""
    if AIRFLOW_V3:
        from airflow.sdk import ObjectStoragePath
    else:
        from airflow.io.path import ObjectStoragePath  # type: ignore  # 2.11 only
    return ObjectStoragePath(url, conn_id=conn_id)


# --- Triggers (the batch operator's, issue 11): base classes, and a connection read from async code --
# `airflow.triggers.base` is the public home of BaseTrigger / TriggerEvent on both lines (3.x has no
# SDK path for them yet). A trigger reads its connection in the triggerer's event loop: 3.x asks the
# supervisor without blocking the loop (`aget_connection`); 2.11 reads it in a thread (env, secrets
# backend or metadata DB), so the loop is not blocked either.
# Imported on first use (PEP 562), not with this module: every DAG-file parse imports compat, and
# Airflow's trigger base module costs ~10 ms there on 3.3 and ~350 ms on 2.11 (measured).
def __getattr__(name: str) -> Any:
    if name in ("BaseTrigger", "TriggerEvent"):
        from airflow.triggers import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def aget_connection(conn_id: str) -> Any:
    """The Airflow connection `conn_id`, read from async code (a trigger's `run`)."""
    if AIRFLOW_V3:
        return await BaseHook.aget_connection(conn_id)
    import asyncio

    return await asyncio.to_thread(BaseHook.get_connection, conn_id)


__all__ += ["BaseTrigger", "TriggerEvent", "aget_connection"]  # noqa: F822 - the first two come from __getattr__

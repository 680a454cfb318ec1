"""The Airflow task settings a step may set (and `defaults.<kind>` for all steps of a kind), written
inline in the step: each becomes the BaseOperator argument of the same name unless said otherwise.

Values are checked by `validate` like every other field; what only the Airflow installation knows
(that a pool or a queue exists) is Airflow's to check when the task runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from ovh_ai_dagfactory.spec.declare import (
    BOOLEAN,
    MAX_INT,
    NON_EMPTY_STRING,
    STRING_LIST,
    Declared,
    Group,
    enum,
    integer,
)
from ovh_ai_dagfactory.spec.shapes import CONNECTION_ID, DURATION
from ovh_ai_dagfactory.spec.shared_fields import EXECUTION_TIMEOUT, RETRIES, RETRY_DELAY

#: Airflow's trigger rules that both supported lines know (2.11 and 3.x): 3.x adds
#: all_done_min_one_success, 2.11 still has dummy and none_failed_or_skipped (deprecated).
#: tests/factory/test_task_options.py checks this list against the installed Airflow.
TRIGGER_RULES = (
    "all_success",
    "all_failed",
    "all_done",
    "all_done_setup_success",
    "all_skipped",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
)
WEIGHT_RULES = ("downstream", "upstream", "absolute")


@dataclass(frozen=True)
class TaskOptions:
    """Airflow task arguments every step (and `defaults.<kind>`) may set, written inline in the step."""

    retries: int | None = RETRIES.field()
    retry_delay: timedelta | None = RETRY_DELAY.field()
    retry_exponential_backoff: bool | None = Declared(
        BOOLEAN, "Double the wait after each retry (retry_delay, 2 × retry_delay, ...).", (True,)
    ).field()
    max_retry_delay: timedelta | None = Declared(
        DURATION, "Longest wait between retries when retry_exponential_backoff grows it.", ("10m",)
    ).field()
    execution_timeout: timedelta | None = EXECUTION_TIMEOUT.field()
    pool: str | None = Declared(
        NON_EMPTY_STRING,
        "Airflow pool the task takes its slots from (e.g. one pool per endpoint to share its rate limit "
        "across DAGs). The pool must exist in Airflow.",
        ("llm_endpoint",),
    ).field()
    pool_slots: int | None = Declared(integer(1), "Slots of the pool the task takes.", (1,)).field()
    queue: str | None = Declared(
        NON_EMPTY_STRING, "Executor queue the task is sent to (CeleryExecutor: the workers listening on it).", ("llm",)
    ).field()
    priority_weight: int | None = Declared(
        dataclasses.replace(integer(-MAX_INT), doc_type="integer"),
        "Priority of the task among queued tasks (higher runs first), combined per weight_rule.",
        (10,),
    ).field()
    weight_rule: str | None = Declared(
        enum(*WEIGHT_RULES),
        "How Airflow sums priority weights: downstream (default), upstream or absolute.",
        ("absolute",),
    ).field()
    trigger_rule: str | None = Declared(
        enum(*TRIGGER_RULES),
        "When the task runs, given its upstream tasks' states (Airflow's trigger rules). Default all_success; "
        "a task reading a for_each step defaults to none_failed, so a fan-out over no item does not skip it.",
        ("all_done",),
    ).field()
    owner: str | None = Declared(NON_EMPTY_STRING, "Task owner shown in the Airflow UI.", ("data",)).field()
    max_active_tis_per_dag: int | None = Declared(
        integer(1), "At most this many instances of the task run at once, across all runs of the DAG.", (2,)
    ).field()
    outlets: tuple[str, ...] | None = Declared(
        STRING_LIST,
        "Asset URIs (Datasets on Airflow 2.11) this step updates when it succeeds: pipelines whose schedule lists "
        "them run after it.",
        (["s3://lake/reports/daily.json"],),
        in_defaults=False,
    ).field()
    connection: str | None = Declared(
        CONNECTION_ID,
        "Airflow connection id holding the AI Endpoints token (and optionally the base URL).",
        ("ovh_ai_endpoints_default",),
        argument=None,  # the connection rule (step, then pipeline, then the hook's default): factory/mapping.py
    ).field()


OPTIONS = Group("Airflow task options, written inline in the step")

"""`validate` (no Airflow) accepts exactly the schedules Airflow accepts, on the installed Airflow line.

"Airflow accepts" is what its DAG processor does with a DAG file's DAG: build the DAG, run
`dag.validate()` (the timetable's own check) and serialize it. The spec side is
`spec.cron.schedule_problem`, which imports croniter only.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from conftest import serialized
from hypothesis import given, settings
from hypothesis import strategies as st

from ovh_ai_dagfactory.spec.cron import AIRFLOW_CRON_PRESETS, schedule_problem

CORPUS = [
    # presets, special timetables and names croniter knows that Airflow does not list
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
    "@midnight",
    "@reboot",
    "@dayly",
    "@",
    "@ daily",
    "@DAILY",
    # ordinary crons
    "0 6 * * 1-5",
    "*/15 * * * *",
    "0 0 1 1 *",
    "5 4 * * sun",
    "0 22 * * 1-5",
    "0 0 * * MON#1",
    "0 0 L * *",
    "0 0 * * 5L",
    "0 0 1,15 * *",
    "0-59/5 * * * *",
    "0 0 * JAN-MAR *",
    # six and seven fields, spacing
    "0 0 * * * *",
    "0 0 * * * 30",
    "0 0 * * * * *",
    " 0 * * * *",
    "0\t* * * *",
    "0  *  *  *  *",
    "0 * * * * ",
    "\n0 * * * *",
    # out of range, malformed
    "61 * * * *",
    "* 24 * * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "*/0 * * * *",
    "0 6 * *",
    "0 6",
    "",
    " ",
    "* * * * * * * *",
    "H * * * *",
    "H(0-30) * * * *",
    "1e3 * * * *",
    "\u0661 * * * *",
    "0 0 1-0 * *",
    "5-1 * * * *",
    "0 0 * * MON#6",
    "? * * * *",
    "* * ? * *",
    "0 0 31 2 *",
    "-1 * * * *",
    "0,,1 * * * *",
    "0 0 * * 7",
    "0 0 * * SUN-SAT",
    "0 0 * * 8-9",
    "* * * * * 60",
    "99999999999999999999 * * * *",
    "*/99999999999 * * * *",
    "0 0 */32 * *",
    "0 0 W * *",
    "0 0 15W * *",
]


def airflow_accepts(schedule: str) -> bool:
    from ovh_ai_dagfactory.compat import DAG

    try:
        # max_active_runs=1: @continuous needs it (a separate rule, checked in checks.py).
        dag = DAG(
            dag_id="cron_agreement",
            schedule=schedule,
            start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
            max_active_runs=1,
        )
        dag.validate()
        serialized(dag)
    except Exception:  # noqa: BLE001 - any refusal counts: that is what would land on the DAG file
        return False
    return True


@pytest.mark.parametrize("schedule", CORPUS, ids=repr)
def test_validate_agrees_with_airflow(schedule: str) -> None:
    assert (schedule_problem(schedule) is None) == airflow_accepts(schedule), schedule_problem(schedule)


CRON_FIELD = st.one_of(
    st.sampled_from(
        [
            "*",
            "0",
            "1",
            "5",
            "7",
            "12",
            "23",
            "24",
            "31",
            "32",
            "59",
            "60",
            "61",
            "L",
            "W",
            "?",
            "MON",
            "SUN",
            "JAN",
            "*/5",
            "*/0",
            "1-5",
            "5-1",
            "1,2",
            "MON#2",
            "5L",
            "H",
            "-1",
            "1e3",
        ]
    ),
    st.text(alphabet="0123456789*/-,#LWH?", min_size=1, max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CRON_FIELD, min_size=4, max_size=8).map(" ".join))
def test_validate_agrees_with_airflow_on_generated_crons(schedule: str) -> None:
    assert (schedule_problem(schedule) is None) == airflow_accepts(schedule), schedule


def test_continuous_needs_one_active_run_in_airflow_and_in_validate() -> None:
    from ovh_ai_dagfactory.compat import DAG
    from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text

    with pytest.raises(Exception, match="max_active_runs"):
        DAG(dag_id="continuous", schedule="@continuous", start_date=datetime(2024, 1, 1, tzinfo=timezone.utc))
    text = "schedule: '@continuous'\nstart_date: 2024-01-01\nsteps:\n  a: {type: chat, model: m, messages: [{role: user, content: x}]}\n"
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "continuous.yaml")
    assert [(e.line, e.column) for e in caught.value.errors] == [(1, 11)]
    assert "max_active_runs: 1" in (caught.value.errors[0].hint or "")
    parse_pipeline_text(text + "max_active_runs: 1\n", "continuous.yaml")


def test_presets_are_airflows() -> None:
    from airflow.utils.dates import cron_presets

    assert AIRFLOW_CRON_PRESETS == cron_presets

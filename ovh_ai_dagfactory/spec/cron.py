"""`schedule` values, accepted exactly when Airflow accepts them — without importing Airflow.

Airflow (2.11 and 3.x alike) turns a schedule string into a timetable this way: `None` is manual,
`@once` and `@continuous` are special timetables, its `cron_presets` map a few `@` names to cron
expressions, and anything else is handed to croniter; the timetable's `validate()` then fails when
croniter refuses the expression. We ask the same library the same question, so `validate` agrees
with the DAG processor (tests/spec/test_cron_agreement.py proves it over a corpus, on both lines).

croniter costs ~130 ms to import; it is imported only when a file has a cron string to check.
"""

from __future__ import annotations

from functools import lru_cache

#: Airflow's `airflow.utils.dates.cron_presets` (identical on 2.11 and 3.3; a test compares them).
AIRFLOW_CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}
#: Schedules Airflow maps to their own timetables, never to cron.
SPECIAL_SCHEDULES = ("@once", "@continuous")
#: What a hint lists as the `@` names a user can write.
PRESET_NAMES = (*SPECIAL_SCHEDULES, *AIRFLOW_CRON_PRESETS)


@lru_cache(maxsize=1024)  # most files of a folder share a handful of schedules
def schedule_problem(schedule: str) -> str | None:
    """Why Airflow would refuse `schedule` (croniter's own words), or None when it accepts it."""
    if schedule in SPECIAL_SCHEDULES:
        return None
    expression = AIRFLOW_CRON_PRESETS.get(schedule, schedule)
    from croniter import croniter

    try:
        croniter(expression)
    except Exception as exc:  # noqa: BLE001 - whatever croniter raises, Airflow's import fails with it
        return str(exc) or type(exc).__name__
    return None

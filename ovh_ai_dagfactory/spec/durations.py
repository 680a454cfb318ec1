"""Durations as users write them: `30s`, `5m`, `1h30m`, `2d`, or integer seconds."""

from __future__ import annotations

import re
from datetime import timedelta

#: The longest duration accepted (365 days): Airflow adds durations to dates (next retry, timeouts)
#: and Python's timedelta overflows past 999,999,999 days; no retry delay or timeout needs a year.
#: The schema's integer form uses the same bound (`maximum`).
MAX_DURATION = timedelta(days=365)
#: Days, hours, minutes, seconds, in that order, at least one: the schema's pattern and the parser's.
DURATION_PATTERN = r"^(?=\d)(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$"
_DURATION = re.compile(DURATION_PATTERN)


class DurationTooLong(ValueError):
    """A well-formed duration past MAX_DURATION (the schema checks the shape, not the size)."""


def parse_duration(value: object) -> timedelta:
    """`value` as a timedelta; ValueError for anything else, or longer than MAX_DURATION."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, float) and value.is_integer():  # JSON Schema counts 30.0 (and -0.0) as integers
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return _bounded(value, value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match:
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            # Summed as integers first: timedelta itself overflows on `1000000000d`.
            return _bounded(((days * 24 + hours) * 60 + minutes) * 60 + seconds, value)
    raise ValueError(f"{value!r} is not a duration")


def _bounded(total_seconds: int, written: object) -> timedelta:
    if total_seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong(f"{written!r} is longer than {MAX_DURATION.days} days, the longest duration accepted")
    return timedelta(seconds=total_seconds)

"""Durations as users write them: `30s`, `5m`, `1h30m`, `2d`, or integer seconds."""

from __future__ import annotations

import re
from datetime import timedelta

# Keep in step with the duration pattern in schemas/pipeline.schema.json.
_DURATION = re.compile(r"^(?=\d)(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object) -> timedelta:
    """`value` as a timedelta; ValueError for anything else (the schema reports those first)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match:
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"{value!r} is not a duration")

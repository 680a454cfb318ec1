"""`start_date` / `end_date` text → timezone-aware UTC datetimes (naive values are taken as UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[Tt ]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"\s*(Z|z|[+-]\d{1,2}(?::?\d{2})?)?$")


def parse_date(text: object) -> datetime:
    """ValueError with a readable reason when `text` is not a real date or date-time."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a date")
    value = text.strip()
    match = _DATE.match(value)
    if match:
        year, month, day = (int(part) for part in match.groups())
        return datetime(year, month, day, tzinfo=timezone.utc)
    match = _DATETIME.match(value)
    if not match:
        raise ValueError(f"'{text}' is not a date or a date-time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro,
                      tzinfo=_zone(zone))
    return moment.astimezone(timezone.utc)


def _zone(text: str | None) -> timezone:
    if not text or text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (digits[:-2], digits[-2:]) if len(digits) > 2 else (digits, "0")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))  # ValueError past 24h

"""`start_date` / `end_date` text → timezone-aware UTC datetimes (naive values are taken as UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

#: Years accepted: datetimes overflow at year 9999 once Airflow adds intervals or time zones, and
#: metadata DBs (MySQL DATETIME) start at year 1000.
MIN_YEAR, MAX_YEAR = 1000, 9000

#: The shape the schema checks (an editor flags `2024-1-1x` as you type); `parse_date` decides.
DATE_PATTERN = r"^\d{4}-\d{1,2}-\d{1,2}([Tt ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{1,2}(:?\d{2})?)?$"

_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[Tt ]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"\s*(Z|z|[+-]\d{1,2}(?::?\d{2})?)?$"
)


def parse_date(text: object) -> datetime:
    """ValueError with a readable reason when `text` is not a real date or date-time in the years
    MIN_YEAR..MAX_YEAR."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a date")
    try:
        moment = _parse(text.strip(), text)
    except OverflowError:  # a zone offset pushing a date past year 1 or 9999
        raise ValueError(f"'{text}' is out of the range of dates") from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"'{text}' is outside the years {MIN_YEAR} to {MAX_YEAR}")
    return moment


def _parse(value: str, text: str) -> datetime:
    match = _DATE.match(value)
    if match:
        year, month, day = (int(part) for part in match.groups())
        return datetime(year, month, day, tzinfo=timezone.utc)
    match = _DATETIME.match(value)
    if not match:
        raise ValueError(f"'{text}' is not a date or a date-time")
    year_text, month_text, day_text, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime(
        int(year_text),
        int(month_text),
        int(day_text),
        int(hour),
        int(minute),
        int(second or 0),
        micro,
        tzinfo=_zone(zone),
    )
    return moment.astimezone(timezone.utc)


def _zone(text: str | None) -> timezone:
    if not text or text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (digits[:-2], digits[-2:]) if len(digits) > 2 else (digits, "0")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))  # ValueError past 24h

"""The shapes of pipeline values that are more than a JSON type: ids, durations, dates, schedules.

Named shapes live once under the schema's `$defs`. Each says, with its pattern, what a user reads
when a value does not match it (`problem`, `hint`).
"""

from __future__ import annotations

from ovh_ai_dagfactory.spec.dates import DATE_PATTERN, parse_date
from ovh_ai_dagfactory.spec.declare import MAX_INT, Shape
from ovh_ai_dagfactory.spec.durations import DURATION_PATTERN, MAX_DURATION, parse_duration

#: Airflow's KEY_REGEX (dag ids, task ids, connection ids) and its length limit.
AIRFLOW_ID_PATTERN = r"^[\w.-]+$"
AIRFLOW_ID_MAX = 250
#: Step ids and param names: task ids that are also Jinja names ({{ steps.<id>.content }}).
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

DURATION = Shape(
    {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": int(MAX_DURATION.total_seconds())},
            {"type": "string", "pattern": DURATION_PATTERN},
        ]
    },
    "duration",
    parse_duration,
    name="duration",
    problem="is not a duration",
    hint="write a duration such as 30s, 5m, 1h30m, or whole seconds",
)
DATE = Shape(
    {"type": "string", "pattern": DATE_PATTERN},
    "date",
    parse_date,
    name="date",
    problem="is not a date",
    hint="write a date (2024-01-01) or a date-time (2024-01-01T06:00:00Z)",
)
DAG_ID = Shape(
    {"type": "string", "minLength": 1, "maxLength": AIRFLOW_ID_MAX, "pattern": AIRFLOW_ID_PATTERN},
    "string",
    problem="is not a valid DAG id",
    hint="use letters, digits, '_', '.' and '-' only",
)
CONNECTION_ID = Shape(
    {"type": "string", "minLength": 1, "maxLength": AIRFLOW_ID_MAX, "pattern": AIRFLOW_ID_PATTERN},
    "string",
    name="connection_id",
    problem="is not a valid connection id",
    hint="an Airflow connection id uses letters, digits, '_', '.' and '-' only",
)
SCHEDULE = Shape(
    {
        "anyOf": [
            {"type": ["string", "null"]},
            {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "minLength": 1}},
        ]
    },
    "string, null, or list of asset URIs",
    lambda value: tuple(value) if isinstance(value, list) else value,
)
TAGS = Shape(
    {"type": "array", "uniqueItems": True, "items": {"type": "string", "minLength": 1, "maxLength": 100}},
    "list of strings",
    tuple,
)
FOR_EACH = Shape(
    {"anyOf": [{"type": "array"}, {"type": "string", "pattern": r"\{\{"}]},
    "list, or a template giving one",
    lambda value: tuple(value) if isinstance(value, list) else value,
    problem="is neither a list nor a template",
    hint="write a list of items, or one template that gives a list, such as {{ params.documents }}",
)
PARAMS = Shape({"type": "object", "propertyNames": {"pattern": NAME_PATTERN}}, "mapping", dict)
#: A pace, in requests per minute (`requests_per_minute` of chat and embedding steps).
RATE = Shape({"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000}, "number > 0")

__all__ = [
    "CONNECTION_ID",
    "DAG_ID",
    "DATE",
    "DURATION",
    "FOR_EACH",
    "MAX_INT",
    "NAME_PATTERN",
    "PARAMS",
    "RATE",
    "SCHEDULE",
    "TAGS",
]

"""Plain, already-checked data → the typed spec objects the DAG builder consumes.

Defaults are merged here (a step's own value wins), durations become timedeltas and dates aware
UTC datetimes. Everything was checked before; a shape this module does not expect is a bug in the
checks, except on the trusted path (no schema pass), where `parse` falls back to full validation.
"""

from __future__ import annotations

from typing import Any

from ovh_ai_dagfactory.spec.checks import default_dag_id
from ovh_ai_dagfactory.spec.dates import parse_date
from ovh_ai_dagfactory.spec.durations import parse_duration
from ovh_ai_dagfactory.spec.model import (
    ChatStep,
    DefaultArgs,
    EmbeddingStep,
    Message,
    Pipeline,
    Position,
    Step,
    TaskOptions,
)
from ovh_ai_dagfactory.spec.yaml_loader import PositionIndex


def to_pipeline(data: dict[str, Any], positions: PositionIndex, source_file: str) -> Pipeline:
    defaults = data.get("defaults") or {}
    steps: list[Step] = []
    step_positions = positions.key_positions(("steps",))
    for step_id, raw in data["steps"].items():
        merged = {**(defaults.get(raw["type"]) or {}), **raw}
        line, column = step_positions.get(step_id) or positions.key(("steps", step_id))
        steps.append(_step(step_id, merged, Position(line, column)))
    top_level = positions.key_positions(())
    start_date = data.get("start_date")
    end_date = data.get("end_date")
    return Pipeline(
        dag_id=data.get("dag_id") or default_dag_id(source_file),
        source_file=source_file,
        steps=tuple(steps),
        description=data.get("description"),
        schedule=data.get("schedule"),
        start_date=parse_date(start_date) if start_date is not None else None,
        end_date=parse_date(end_date) if end_date is not None else None,
        catchup=bool(data.get("catchup", False)),
        tags=tuple(data.get("tags") or ()),
        default_args=_default_args(data.get("default_args") or {}),
        connection=data.get("connection"),
        max_active_runs=_integer(data.get("max_active_runs")),
        params=dict(data.get("params") or {}),
        dag_id_position=Position(*top_level["dag_id"]) if "dag_id" in top_level else Position(1, 1),
        field_positions={name: Position(*where) for name, where in top_level.items()},
    )


def _step(step_id: str, raw: dict[str, Any], position: Position) -> Step:
    common = {
        "step_id": step_id,
        "model": raw["model"],
        "depends_on": tuple(raw.get("depends_on") or ()),
        "options": _options(raw),
        "position": position,
        "description": raw.get("description"),
    }
    if raw["type"] == "chat":
        stop = raw.get("stop")
        return ChatStep(
            messages=tuple(Message(role=m["role"], content=m["content"]) for m in raw["messages"]),
            temperature=raw.get("temperature"),
            max_tokens=_integer(raw.get("max_tokens")),
            top_p=raw.get("top_p"),
            stop=tuple(stop) if isinstance(stop, list) else stop,
            **common,
        )
    if raw["type"] == "embedding":
        texts = raw["input"]
        return EmbeddingStep(input=tuple(texts) if isinstance(texts, list) else texts, **common)
    raise ValueError(f"unknown step type {raw['type']!r}")


def _options(raw: dict[str, Any]) -> TaskOptions:
    return TaskOptions(
        retries=_integer(raw.get("retries")),
        retry_delay=_duration(raw.get("retry_delay")),
        execution_timeout=_duration(raw.get("execution_timeout")),
        connection=raw.get("connection"),
    )


def _default_args(raw: dict[str, Any]) -> DefaultArgs:
    email = raw.get("email")
    return DefaultArgs(
        owner=raw.get("owner"),
        retries=_integer(raw.get("retries")),
        retry_delay=_duration(raw.get("retry_delay")),
        execution_timeout=_duration(raw.get("execution_timeout")),
        email=(email,) if isinstance(email, str) else tuple(email or ()),
        email_on_failure=raw.get("email_on_failure"),
        email_on_retry=raw.get("email_on_retry"),
        depends_on_past=raw.get("depends_on_past"),
    )


def _integer(value: Any) -> int | None:
    """JSON Schema counts 3.0 as an integer; Airflow and the API want an int, so 3.0 becomes 3."""
    return int(value) if isinstance(value, float) else value


def _duration(value: Any):  # type: ignore[no-untyped-def]
    return None if value is None else parse_duration(value)

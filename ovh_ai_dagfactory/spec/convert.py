"""Plain, already-checked data → the typed spec objects the DAG builder consumes.

Driven by the declarations in `model`: each declared field is read from its YAML key and converted
by its shape (durations become timedeltas, dates aware UTC datetimes, lists tuples). Defaults are
merged here (a step's own value wins). Everything was checked before: a shape this module does not
expect is a bug of ours, which `parse` reports as an internal error.
"""

from __future__ import annotations

from typing import Any

from ovh_ai_dagfactory.spec.checks import default_dag_id
from ovh_ai_dagfactory.spec.declare import Declared, DeclaredField, declared_fields, group_class
from ovh_ai_dagfactory.spec.model import STEP_CLASSES, Pipeline, Position, Step
from ovh_ai_dagfactory.spec.yaml_loader import PositionIndex


def to_pipeline(data: dict[str, Any], positions: PositionIndex, source_file: str) -> Pipeline:
    defaults = data.get("defaults") or {}
    step_positions = positions.key_positions(("steps",))
    steps: list[Step] = []
    for step_id, raw in data["steps"].items():
        merged = {**(defaults.get(raw["type"]) or {}), **raw}
        line, column = step_positions.get(step_id) or positions.key(("steps", step_id))
        cls = STEP_CLASSES[raw["type"]]
        values = values_of(cls, merged, source_file)
        steps.append(cls(step_id=step_id, position=Position(line, column), **values))
    top_level = positions.key_positions(())
    values = values_of(Pipeline, data, source_file)
    values["dag_id"] = data.get("dag_id") or default_dag_id(source_file)
    return Pipeline(
        **values,
        steps=tuple(steps),
        source_file=source_file,
        field_positions={name: Position(*where) for name, where in top_level.items()},
    )


def values_of(cls: type, raw: dict[str, Any], source_file: str) -> dict[str, Any]:
    """Keyword arguments of `cls` for the declared fields written in `raw` (groups built in place)."""
    values: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    fields = _fields_by_name(cls)
    for name, raw_value in raw.items():  # a step writes a few of its many fields: walk what is written
        item = fields.get(name)
        if item is None:
            continue  # `type`, keys of other kinds in merged defaults: the checks had their say
        value = converted(item.declared, raw_value, source_file)
        if item.group is None:
            values[item.name] = value
        else:
            groups.setdefault(item.group, {})[item.name] = value
    for name, group_values in groups.items():
        values[name] = group_class(cls, name)(**group_values)
    return values


def _fields_by_name(cls: type) -> dict[str, DeclaredField]:
    fields = _FIELDS_BY_NAME.get(cls)
    if fields is None:
        fields = _FIELDS_BY_NAME[cls] = {item.name: item for item in declared_fields(cls)}
        assert len(fields) == len(declared_fields(cls)), f"{cls.__name__} declares a field name twice"
    return fields


_FIELDS_BY_NAME: dict[type, dict[str, DeclaredField]] = {}


def converted(declared: Declared, value: Any, source_file: str) -> Any:
    if value is None:
        return None
    nested = declared.nested
    if nested is not None:
        if isinstance(value, list):
            return tuple(nested(**values_of(nested, entry, source_file)) for entry in value)
        return nested(**values_of(nested, value, source_file))
    if declared.shape.convert_in_file is not None:
        return declared.shape.convert_in_file(value, source_file)
    convert = declared.shape.convert
    return convert(value) if convert is not None else value

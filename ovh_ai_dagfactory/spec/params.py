"""`params` values: a plain default (`audience: executives`), or a typed Airflow Param written as a
mapping with a `type` (`top_n: {type: integer, minimum: 1, default: 5, description: ...}`), checked
by `validate` as Airflow checks it when a run is triggered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: The keys of a typed param: Airflow Param's `default` and `description`, and the JSON Schema
#: keywords it validates a value with. A mapping with `type` and only these keys is a typed param;
#: any other mapping is a plain default (write `{type: object, default: {...}}` to be explicit).
PARAM_KEYWORDS = frozenset(
    {
        "type",
        "default",
        "description",
        "title",
        "enum",
        "const",
        "examples",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "properties",
        "required",
        "additionalProperties",
        "values_display",
    }
)
#: The keys of a typed param that are Param's own arguments, not keywords of its JSON Schema.
PARAM_ARGUMENTS = ("default", "description")
#: ... and the one Airflow's trigger form reads from the schema but validation does not use.
_NOT_SCHEMA = (*PARAM_ARGUMENTS, "values_display")


def typed_param(value: Any) -> dict[str, Any] | None:
    """The Param a params value declares, or None when the value is a plain default."""
    if isinstance(value, dict) and "type" in value and set(value) <= PARAM_KEYWORDS:
        return value
    return None


def param_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema part of a typed param (what Airflow validates values with)."""
    return {key: value for key, value in spec.items() if key not in _NOT_SCHEMA}


def param_problems(
    name: str, spec: dict[str, Any], scheduled: bool
) -> Iterator[tuple[tuple[str | int, ...], str, str | None]]:
    """(path inside the param, message, hint) of each way Airflow would refuse this param."""
    from jsonschema import Draft202012Validator  # only for files that use the feature

    schema = param_schema(spec)
    invalid = False
    for error in Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(schema):
        invalid = True
        yield tuple(error.absolute_path), f"param '{name}' is not a valid JSON Schema: {error.message}", None
    if invalid:
        return
    if "default" in spec:
        for error in Draft202012Validator(schema).iter_errors(spec["default"]):
            yield (
                ("default", *error.absolute_path),
                f"the default of param '{name}' does not match it: {error.message}",
                None,
            )
    elif scheduled:
        yield (
            (),
            f"param '{name}' has no default: Airflow refuses a scheduled pipeline with a param it cannot fill",
            "give it a default, or set 'schedule: null' (then each run must pass a value)",
        )

"""A chat step's `output_schema`: a JSON Schema mapping written inline, or a `.json` file next to the
pipeline. `validate` checks it is a valid Draft 2020-12 schema, with positions inside it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any


class OutputSchemaUnreadable(ValueError):
    """The file an `output_schema` names cannot be used (missing, not JSON, not a mapping)."""


def load_output_schema(value: Any, source_file: str) -> Any:
    """The schema itself: `value` when it is a mapping, else the JSON file it names, relative to the
    pipeline file. Raises OutputSchemaUnreadable with the reason."""
    if not isinstance(value, str):
        return value
    from ovh_ai_dagfactory.spec.errors import PipelineInvalid
    from ovh_ai_dagfactory.spec.parse import read_pipeline_bytes

    path = os.path.join(os.path.dirname(source_file), value)
    try:
        raw = read_pipeline_bytes(path)  # the same rules as a pipeline file: a regular file, size cap
    except PipelineInvalid as invalid:
        raise OutputSchemaUnreadable(f"{value}: {invalid.errors[0].message}") from None
    try:
        schema = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputSchemaUnreadable(f"{value} is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise OutputSchemaUnreadable(f"{value} holds a JSON {type(schema).__name__}, not a schema (a mapping)")
    return schema


def schema_problems(schema: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path inside the schema, message) of every way `schema` is not a valid Draft 2020-12 schema."""
    from jsonschema import Draft202012Validator  # only for files that use the feature

    for error in Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(schema):
        yield tuple(error.absolute_path), error.message


def referenced_files(raw: bytes, source_file: str) -> list[str]:
    """The other files a pipeline's outcome depends on (`output_schema: x.json`), found by a cheap
    scan of its bytes, so that a cache keyed by content can key on them too. Over-inclusive at worst
    (a commented-out line): that only costs a re-validation."""
    if b".json" not in raw:
        return []
    from ovh_ai_dagfactory.spec.declare import declared_fields
    from ovh_ai_dagfactory.spec.model import STEP_CLASSES

    names = {
        item.name
        for cls in STEP_CLASSES.values()
        for item in declared_fields(cls)
        if item.declared.shape.convert_in_file is not None
    }
    pattern = re.compile(
        rb"(?m)^[ \t]*(?:"
        + b"|".join(re.escape(name.encode()) for name in sorted(names))
        + rb")[ \t]*:[ \t]*[\"']?([^\"'\s#]+\.json)"
    )
    folder = os.path.dirname(source_file)
    return sorted({os.path.join(folder, match.decode("utf-8", "replace")) for match in pattern.findall(raw)})


def output_schema_problems(
    step_id: str, value: Any, source_file: str
) -> Iterator[tuple[tuple[str | int, ...], str, str | None]]:
    """(path in the pipeline, message, hint) of each way a chat step's `output_schema` is unusable:
    a file that cannot be read, or not a valid Draft 2020-12 schema (positioned inside it when inline)."""
    path: tuple[str | int, ...] = ("steps", step_id, "output_schema")
    if not (isinstance(value, dict) or (isinstance(value, str) and value.endswith(".json"))):
        return  # absent, or a shape the JSON Schema reports
    try:
        schema = load_output_schema(value, source_file)
    except OutputSchemaUnreadable as exc:
        yield (
            path,
            f"output_schema of step '{step_id}' cannot be read: {exc}",
            "write the file next to the pipeline, as JSON, or put the schema inline",
        )
        return
    for inner, message in schema_problems(schema):
        if isinstance(value, dict):
            yield (*path, *inner), f"output_schema of step '{step_id}' is not a valid JSON Schema: {message}", None
        else:
            where = "/".join(map(str, inner)) or "its top level"
            yield (
                path,
                f"output_schema {value} of step '{step_id}' is not a valid JSON Schema (at {where}): {message}",
                None,
            )


def unknown_json_name(schema: Any, step_id: str, name: str) -> tuple[str, str] | None:
    """(message, hint) when `steps.<step_id>.json.<name>` reads a property the step's (loaded) schema
    does not list (and does not allow others: strict structured output only returns the listed ones)."""
    from ovh_ai_dagfactory.spec.suggest import did_you_mean

    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or schema.get("additionalProperties") or name in properties:
        return None
    return (
        f"the output_schema of step '{step_id}' has no property '{name}' (read as steps.{step_id}.json.{name})",
        did_you_mean(name, list(properties)) or f"its properties: {', '.join(properties)}",
    )

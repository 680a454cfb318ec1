"""The docs stay in step with the schema: every property is documented, every property describes itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas" / "pipeline.schema.json").read_text(encoding="utf-8"))
REFERENCE = (REPO / "docs" / "pipeline-reference.md").read_text(encoding="utf-8")


def resolved(schema: Any) -> Any:
    while isinstance(schema, dict) and set(schema) == {"$ref"}:
        schema = SCHEMA["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    return schema


def properties(schema: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path, name, subschema) of every property anywhere in the schema."""
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            yield f"{path}.{name}".lstrip("."), name, sub
            yield from properties(sub, f"{path}.{name}")
        for keyword, sub in schema.items():
            if keyword in ("$defs",):
                for name, definition in sub.items():
                    yield from properties(definition, f"$defs.{name}")
            elif keyword in ("items", "additionalProperties", "then", "else") and isinstance(sub, dict):
                # `if` holds conditions (type: chat), not properties a user writes
                yield from properties(sub, path)
            elif keyword in ("anyOf", "oneOf", "allOf"):
                for branch in sub:
                    yield from properties(branch, path)


ALL = sorted(set((dotted, name) for dotted, name, _ in properties(SCHEMA)))


@pytest.mark.parametrize("dotted, name", ALL, ids=[dotted for dotted, _ in ALL])
def test_property_is_documented(dotted: str, name: str) -> None:
    assert f"`{name}`" in REFERENCE, f"{dotted} is not in docs/pipeline-reference.md"


@pytest.mark.parametrize("dotted, name, sub", list(properties(SCHEMA)), ids=[d for d, _, _ in properties(SCHEMA)])
def test_property_has_description_and_examples(dotted: str, name: str, sub: Any) -> None:
    sub = resolved(sub)  # a field used in several places is defined once under $defs and referenced
    assert sub.get("description"), dotted
    assert sub.get("examples") is not None and len(sub["examples"]) >= 1, dotted


def test_objects_are_closed() -> None:
    def objects(schema: Any) -> Iterator[Any]:
        if isinstance(schema, dict):
            if "properties" in schema and schema is not SCHEMA["$defs"]["step"]:
                yield schema
            for keyword, value in schema.items():
                if keyword not in ("if", "examples"):  # conditions and sample values, not objects a user writes
                    yield from objects(value)
        elif isinstance(schema, list):
            for value in schema:
                yield from objects(value)

    for schema in objects(SCHEMA):
        assert schema.get("additionalProperties") is False, schema.get("description")


def test_schema_is_draft_2020_12_with_an_id() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"]


def test_runtime_names_are_documented() -> None:
    from ovh_ai_dagfactory.spec.references import OUTPUTS_BY_KIND

    for output in {name for outputs in OUTPUTS_BY_KIND.values() for name in outputs}:
        assert f"steps.<id>.{output}" in REFERENCE

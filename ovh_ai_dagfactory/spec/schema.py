"""The JSON Schema: one compiled validator, and its errors in words a user reads.

The schema is generated from the field declarations (`schema_build`); `schemas/pipeline.schema.json`
is the same schema written out for editors (`$schema` comment) and `ovh-ai-dagfactory schema`, and a
test keeps them equal. Validation runs on the plain data; only when there are errors do we walk the
YAML nodes for positions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from ovh_ai_dagfactory.spec.declare import declared_fields
from ovh_ai_dagfactory.spec.errors import PipelineError
from ovh_ai_dagfactory.spec.suggest import closest, did_you_mean
from ovh_ai_dagfactory.spec.yaml_loader import Path, PositionIndex

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


@lru_cache(maxsize=1)
def _pattern_words() -> dict[str, tuple[str, str | None]]:
    """Field name → (problem, hint) for a value that fails its shape's pattern: from the declarations."""
    from ovh_ai_dagfactory.spec.model import STEP_CLASSES, DefaultArgs, Pipeline

    words: dict[str, tuple[str, str | None]] = {}
    for cls in (Pipeline, DefaultArgs, *STEP_CLASSES.values()):
        for item in declared_fields(cls):
            shape = item.declared.shape
            if shape.problem is not None:
                words.setdefault(item.name, (shape.problem, shape.hint))
    return words


def pipeline_schema() -> dict[str, Any]:
    """A fresh copy of the schema: fastjsonschema rewrites the `$ref`s of the dict it compiles."""
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The schema as `schemas/pipeline.schema.json` holds it (and `ovh-ai-dagfactory schema` prints)."""
    from ovh_ai_dagfactory.spec.schema_build import build_schema

    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


@lru_cache(maxsize=1)
def _validator() -> Any:
    # Compiled once per process: building a validator (resolving $refs) costs more than validating.
    # No format checker: the schema uses none, and format checks are the slow part of jsonschema.
    from jsonschema.validators import validator_for

    schema = pipeline_schema()
    return validator_for(schema)(schema)


#: Keywords fastjsonschema implements the way Draft 2020-12 means them. A schema change that uses
#: any other keyword turns the fast path off (slower, never wrong); a test keeps this list honest.
FAST_CHECK_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$ref",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "type",
        "enum",
        "const",
        "properties",
        "additionalProperties",
        "propertyNames",
        "required",
        "minProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",  # numbers, as in Draft 6 and later (fastjsonschema's Draft 7 included)
        "exclusiveMaximum",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
    }
)


@lru_cache(maxsize=1)
def _fast_check() -> Callable[[Any], bool] | None:
    """A yes/no answer for the common case, a valid file: fastjsonschema compiles the schema into
    Python code (~0.3 ms per 10-step file against ~2.5 ms for jsonschema, which walks the schema
    generically). jsonschema stays the authority: it explains every "no". None when the schema uses
    a keyword outside FAST_CHECK_KEYWORDS or puts constraints beside a `$ref` (Draft 7 semantics,
    which fastjsonschema follows, would ignore them).

    The compiled code ships as a generated module (`fast_check_source`, written by `spec.generate`
    and kept current by its test): building the schema and compiling it cost ~170 ms, which every
    cold parse of a DAG folder (and every `validate` run) paid before its first file."""
    import fastjsonschema

    try:
        from ovh_ai_dagfactory.spec import generated_fast_check

        compiled: Callable[[Any], Any] | None = generated_fast_check.check
    except ImportError:  # a source tree where it was never generated: compile it here
        compiled = None
    if compiled is None:
        schema = pipeline_schema()
        if not _fast_check_supports(schema):
            return None
        # No defaults filled in (that would change the data) and no formats (the schema uses none).
        compiled = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    validate = compiled

    def check(data: Any) -> bool:
        try:
            validate(data)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return check


def fast_check_source() -> str:
    """The text of `spec/generated_fast_check.py`: fastjsonschema's code for the schema, with `check`
    naming its entry point (None when the schema cannot be fast-checked)."""
    import re

    import fastjsonschema

    header = (
        '"""Generated by `python -m ovh_ai_dagfactory.spec.generate` from the pipeline schema: do not edit.\n\n'
        "fastjsonschema's validator for it, compiled ahead of time (see `schema._fast_check`).\n"
        '"""\n# mypy: ignore-errors\n'
    )
    schema = pipeline_schema()
    if not _fast_check_supports(schema):
        return header + "check = None\n"
    code = fastjsonschema.compile_to_code(schema, use_default=False, use_formats=False)
    entry = re.search(r"^def (\w+)\(", code, re.MULTILINE)
    assert entry is not None, "fastjsonschema's code defines no function"
    return f"{header}{code.rstrip()}\n\n\ncheck = {entry.group(1)}\n"


def _fast_check_supports(schema: Any, in_names: bool = False) -> bool:
    if isinstance(schema, list):
        return all(_fast_check_supports(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if in_names:  # keys of `properties` / `$defs` are names, their values are schemas
        return all(_fast_check_supports(value) for value in schema.values())
    keywords = set(schema)
    if not keywords <= FAST_CHECK_KEYWORDS:
        return False
    if "$ref" in keywords and keywords - {
        "$ref",
        "$defs",
        "$id",
        "$schema",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
    }:
        return False
    return all(
        _fast_check_supports(value, in_names=key in ("properties", "$defs"))
        for key, value in schema.items()
        if key not in ("examples", "default", "enum", "const")
    )


def schema_errors(data: Any, positions: PositionIndex, source_file: str) -> list[PipelineError]:
    """Every schema violation in `data`, each at the position of the offending key or value."""
    fast = _fast_check()
    if fast is not None and fast(data):
        return []
    raw = list(_validator().iter_errors(data))
    if not raw:
        return []
    found: list[PipelineError] = []
    for error in raw:
        found.extend(_explain(error, positions, source_file))
    return found


def _explain(error: Any, positions: PositionIndex, file: str) -> Iterator[PipelineError]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    instance = error.instance

    def at_value(message: str, hint: str | None = None, where: Path = path) -> PipelineError:
        line, column = positions.value(where)
        return PipelineError(file, line, column, message, hint)

    def at_key(message: str, hint: str | None = None, where: Path = path) -> PipelineError:
        line, column = positions.key(where) if where else (1, 1)
        return PipelineError(file, line, column, message, hint)

    if "propertyNames" in error.absolute_schema_path:
        yield _bad_name(error, path, at_key)
        return
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        for name in instance:
            if name not in allowed:
                hint = did_you_mean(name, allowed) or f"allowed keys: {', '.join(allowed)}"
                yield at_key(f"unknown key '{name}' {_in(path)}", hint, path + (name,))
        return
    if kind == "required" and isinstance(instance, dict):
        allowed = error.schema.get("properties", {})
        misspelt = {closest(key, allowed) for key in instance if key not in allowed}
        for name in error.validator_value:
            if name not in instance and name not in misspelt:  # the unknown-key error says it better
                yield at_key(f"{_owner(path)} is missing the required key '{name}'")
        return
    if kind in ("anyOf", "oneOf"):
        yield from _explain_alternatives(error, path, at_value, positions, file)
        return
    yield at_value(*_simple_message(kind, error.validator_value, instance, path))


def _explain_alternatives(
    error: Any, path: Path, at_value: Any, positions: PositionIndex, file: str
) -> Iterator[PipelineError]:
    """Report the branch the user was aiming at: the one whose type matches the value."""
    branches = error.validator_value
    aimed = [sub for sub in error.context if sub.validator != "type" and _matches_type(sub, error)]
    if aimed:
        from jsonschema.exceptions import best_match

        yield from _explain(best_match(aimed), positions, file)
        return
    wanted: list[str] = []
    for branch in branches:
        word = _describe_type(branch)
        if word and word not in wanted:
            wanted.append(word)
    yield at_value(
        f"{_label(path)} must be {' or '.join(wanted)}, got {_describe_value(error.instance)}",
        _quote_hint(error.instance, wanted),
    )


def _matches_type(sub: Any, parent: Any) -> bool:
    """Whether the failing branch of `sub` accepts the value's type (so its complaint is the real one)."""
    branch = parent.validator_value[sub.relative_schema_path[0]]
    wanted = branch.get("type") if isinstance(branch, dict) else None
    return wanted is None or _is_type(parent.instance, wanted)


def _is_type(value: Any, wanted: Any) -> bool:
    names = wanted if isinstance(wanted, list) else [wanted]
    checks = {
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        "boolean": isinstance(value, bool),
        "null": value is None,
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
    }
    return any(checks.get(name, False) for name in names)


def _describe_type(branch: Any) -> str | None:
    if not isinstance(branch, dict) or "type" not in branch:
        return None
    if branch["type"] == "array" and isinstance(branch.get("items"), dict) and "type" in branch["items"]:
        return f"a list of {branch['items']['type']}s"
    names = branch["type"] if isinstance(branch["type"], list) else [branch["type"]]  # ["string", "null"]
    return " or ".join(str(_TYPE_WORDS.get(name, name)) for name in names)


def _simple_message(kind: str, expected: Any, instance: Any, path: Path) -> tuple[str, str | None]:
    label = _label(path)
    if kind == "type":
        names = expected if isinstance(expected, list) else [expected]
        words = [str(_TYPE_WORDS.get(name, name)) for name in names]
        return (f"{label} must be {' or '.join(words)}, got {_describe_value(instance)}", _quote_hint(instance, words))
    if kind == "enum":
        allowed = ", ".join(repr(value) for value in expected)
        hint = did_you_mean(instance, expected) if isinstance(instance, str) else None
        return f"{label} must be one of {allowed}, got {_describe_value(instance)}", hint
    if kind == "const":
        return f"{label} must be {expected!r}, got {_describe_value(instance)}", None
    if kind == "minimum":
        return f"{label} must be at least {expected}, got {instance}", None
    if kind == "maximum":
        return f"{label} must be at most {expected}, got {instance}", None
    if kind == "exclusiveMinimum":
        return f"{label} must be more than {expected}, got {instance}", None
    if kind == "exclusiveMaximum":
        return f"{label} must be less than {expected}, got {instance}", None
    if kind == "minLength":
        return (
            (f"{label} must not be empty", None)
            if expected == 1
            else (f"{label} must be at least {expected} characters long", None)
        )
    if kind == "maxLength":
        return f"{label} must be at most {expected} characters long", None
    if kind == "minItems":
        return f"{label} needs at least {expected} item{'s' if expected != 1 else ''}", None
    if kind == "maxItems":
        return f"{label} takes at most {expected} items", None
    if kind == "minProperties":
        if path == ("steps",):
            return "'steps' is empty: a pipeline needs at least one step", None
        return f"{label} needs at least {expected} entries", None
    if kind == "uniqueItems":
        return f"{label} lists the same value more than once", None
    if kind == "pattern":
        by_field = _pattern_words()
        # The nearest field with words: a value inside a mapping field (an owner's link) has the
        # field's words, not its own key's.
        named = next((by_field[part] for part in reversed(path) if isinstance(part, str) and part in by_field), None)
        problem, hint = named or ("has an invalid value", None)
        return f"{label} {problem}: {_describe_value(instance)}", hint
    return f"{label}: {kind} check failed for {_describe_value(instance)}", None


def _bad_name(error: Any, path: Path, at_key: Callable[..., PipelineError]) -> PipelineError:
    name = error.instance
    if path == ("steps",):
        fixed = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name))
        if fixed[:1].isdigit():
            fixed = "_" + fixed
        hint = (
            "step ids become task ids and Jinja names ({{ steps.<id>.content }}): a letter or '_' "
            "then letters, digits or '_'" + (f"; e.g. '{fixed[:250]}'" if fixed else "")
        )
        return at_key(f"'{name}' is not a valid step id", hint, path + (name,))
    return at_key(
        f"'{name}' is not a valid name {_in(path)}", "use a letter or '_' then letters, digits or '_'", path + (name,)
    )


def _label(path: Path) -> str:
    """How a value is named in a message: "'temperature' of step 'summarize'", "message 2 of ..."."""
    if not path:
        return "the pipeline"
    last = path[-1]
    parent = path[:-1]
    if isinstance(last, int):
        if len(parent) == 3 and parent[0] == "steps" and parent[2] == "messages":
            return f"message {last + 1} of step '{parent[1]}'"
        return f"item {last + 1} of {_label(parent)}"
    if len(path) == 2 and path[0] == "steps":
        return f"step '{last}'"
    owner = _owner(parent)
    return f"'{last}'" if owner == "the pipeline" else f"'{last}' of {owner}"


def _owner(path: Path) -> str:
    if not path:
        return "the pipeline"
    if len(path) >= 2 and path[0] == "steps":
        return _label(path)
    return "'" + ".".join(str(part) for part in path) + "'"


def _in(path: Path) -> str:
    return "at the top level" if not path else f"in {_owner(path)}"


def _describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"'{shown}'"
    if isinstance(value, (int, float)):
        return str(value)
    return "a list" if isinstance(value, list) else "a mapping"


def _quote_hint(value: Any, wanted: list[str]) -> str | None:
    """YAML turns `no`, `1.0`, `null` into non-strings; say so when a string was expected."""
    if not any(word.startswith("a string") for word in wanted):
        return None
    if value is None:
        return "the value is empty; write it after the colon, or in quotes"
    if isinstance(value, (bool, int, float)):
        return "YAML read this as a non-string value; put it in quotes"
    return None


__all__ = ["pipeline_schema", "schema_errors", "schema_text"]

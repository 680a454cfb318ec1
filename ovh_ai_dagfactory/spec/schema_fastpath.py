"""The pipeline JSON Schema compiled into one yes/no Python check, for the common case: a valid file.

jsonschema costs ~3 ms for a 10-step pipeline (it walks the schema generically, collecting errors);
the DAG loader's budget is ~1 ms per file for everything. Most files are valid, so we first ask
this compiled check, which only answers "valid?" and is ~20x faster, and let jsonschema (the
authority) explain the failures. A test compares both answers on thousands of generated documents.

Only the keywords the pipeline schema uses are compiled; `compile_schema` raises
`UnsupportedKeyword` for any other, and the caller then uses jsonschema alone — a schema change
can make validation slower, never wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

#: Keywords that describe rather than constrain.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "examples", "default", "$comment"})


class UnsupportedKeyword(Exception):
    pass


def compile_schema(root: dict[str, Any]) -> Check:
    compiled_refs: dict[str, Check] = {}

    def ref(pointer: str) -> Check:
        if pointer not in compiled_refs:
            if not pointer.startswith("#/$defs/"):
                raise UnsupportedKeyword(f"$ref {pointer}")
            target = root["$defs"][pointer[len("#/$defs/"):]]
            compiled_refs[pointer] = lambda value: False  # placeholder while compiling (no recursion here)
            compiled_refs[pointer] = build(target)
        return compiled_refs[pointer]

    def build(schema: Any) -> Check:
        if schema is True:
            return lambda value: True
        if schema is False:
            return lambda value: False
        checks: list[Check] = []
        for keyword, argument in schema.items():
            if keyword in _ANNOTATIONS or keyword in ("then", "else"):
                continue
            maker = _KEYWORDS.get(keyword)
            if maker is None:
                raise UnsupportedKeyword(keyword)
            checks.append(maker(argument, schema, build, ref))
        if len(checks) == 1:
            return checks[0]
        return _all_of(checks)

    return build(root)


def _all_of(checks: list[Check]) -> Check:
    def check(value: Any) -> bool:
        for one in checks:  # a plain loop: measurably cheaper than all(<generator>) per call
            if not one(value):
                return False
        return True
    return check


# -- types --------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "number": _is_number,
    # JSON Schema: 1.0 is an integer
    "integer": lambda value: _is_number(value) and (isinstance(value, int) or float(value).is_integer()),
}


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, containers compare element-wise."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_equal(left[key], right[key]) for key in left)
    if _is_number(left) and _is_number(right):
        return left == right
    return type(left) is type(right) and left == right


# -- keywords: each maker gets (argument, whole subschema, build, ref) and returns a Check ---------
def _type(argument: Any, *_: Any) -> Check:
    names = argument if isinstance(argument, list) else [argument]
    checks = [_TYPES[name] for name in names]
    return lambda value: any(check(value) for check in checks)


def _properties(argument: dict[str, Any], _schema: Any, build: Any, _ref: Any) -> Check:
    compiled = {name: build(sub) for name, sub in argument.items()}

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name, sub in compiled.items():
            if name in value and not sub(value[name]):
                return False
        return True
    return check


def _additional_properties(argument: Any, schema: dict[str, Any], build: Any, _ref: Any) -> Check:
    if "patternProperties" in schema:
        raise UnsupportedKeyword("patternProperties")
    known = frozenset(schema.get("properties", {}))
    extra = build(argument)

    def check(value: Any) -> bool:
        if isinstance(value, dict):
            for name, item in value.items():
                if name not in known and not extra(item):
                    return False
        return True
    return check


def _required(argument: list[str], *_: Any) -> Check:
    return lambda value: not isinstance(value, dict) or all(name in value for name in argument)


def _property_names(argument: Any, _schema: Any, build: Any, _ref: Any) -> Check:
    names = build(argument)
    return lambda value: not isinstance(value, dict) or all(names(name) for name in value)


def _min_properties(argument: int, *_: Any) -> Check:
    return lambda value: not isinstance(value, dict) or len(value) >= argument


def _items(argument: Any, _schema: Any, build: Any, _ref: Any) -> Check:
    item = build(argument)

    def check(value: Any) -> bool:
        if isinstance(value, list):
            for element in value:
                if not item(element):
                    return False
        return True
    return check


def _min_items(argument: int, *_: Any) -> Check:
    return lambda value: not isinstance(value, list) or len(value) >= argument


def _max_items(argument: int, *_: Any) -> Check:
    return lambda value: not isinstance(value, list) or len(value) <= argument


def _unique_items(argument: bool, *_: Any) -> Check:
    def check(value: Any) -> bool:
        if not argument or not isinstance(value, list):
            return True
        return not any(_equal(value[i], value[j]) for i in range(len(value)) for j in range(i + 1, len(value)))
    return check


def _min_length(argument: int, *_: Any) -> Check:
    return lambda value: not isinstance(value, str) or len(value) >= argument


def _max_length(argument: int, *_: Any) -> Check:
    return lambda value: not isinstance(value, str) or len(value) <= argument


def _pattern(argument: str, *_: Any) -> Check:
    search = re.compile(argument).search  # JSON Schema patterns are unanchored searches
    return lambda value: not isinstance(value, str) or search(value) is not None


def _minimum(argument: float, *_: Any) -> Check:
    return lambda value: not _is_number(value) or value >= argument


def _maximum(argument: float, *_: Any) -> Check:
    return lambda value: not _is_number(value) or value <= argument


def _enum(argument: list[Any], *_: Any) -> Check:
    return lambda value: any(_equal(value, allowed) for allowed in argument)


def _const(argument: Any, *_: Any) -> Check:
    return lambda value: _equal(value, argument)


def _any_of(argument: list[Any], _schema: Any, build: Any, _ref: Any) -> Check:
    branches = [build(sub) for sub in argument]
    return lambda value: any(branch(value) for branch in branches)


def _one_of(argument: list[Any], _schema: Any, build: Any, _ref: Any) -> Check:
    branches = [build(sub) for sub in argument]
    return lambda value: sum(1 for branch in branches if branch(value)) == 1


def _if(argument: Any, schema: dict[str, Any], build: Any, _ref: Any) -> Check:
    condition = build(argument)
    then = build(schema.get("then", True))
    otherwise = build(schema.get("else", True))
    return lambda value: then(value) if condition(value) else otherwise(value)


def _dollar_ref(argument: str, _schema: Any, _build: Any, ref: Any) -> Check:
    resolved: list[Check] = []

    def check(value: Any) -> bool:
        if not resolved:  # resolve on first use: $defs may refer to each other in any order
            resolved.append(ref(argument))
        return resolved[0](value)
    ref(argument)  # compile now, so unsupported keywords surface at compile time
    return check


_KEYWORDS: dict[str, Callable[..., Check]] = {
    "type": _type, "properties": _properties, "additionalProperties": _additional_properties,
    "required": _required, "propertyNames": _property_names, "minProperties": _min_properties,
    "items": _items, "minItems": _min_items, "maxItems": _max_items, "uniqueItems": _unique_items,
    "minLength": _min_length, "maxLength": _max_length, "pattern": _pattern,
    "minimum": _minimum, "maximum": _maximum, "enum": _enum, "const": _const,
    "anyOf": _any_of, "oneOf": _one_of, "if": _if, "$ref": _dollar_ref,
}

"""The vocabulary in which every pipeline field is declared once (see `model`).

A field is declared where its typed attribute is: a dataclass field of the spec model whose
metadata holds a `Declared` — its YAML shape, description, examples, whether Jinja renders it at
run time, and which Airflow argument it becomes. Everything else derives from those declarations:
the JSON Schema (`schema_build`), the conversion from YAML (`convert`), the mapping to operator
arguments (factory/mapping.py, used by the builder and by `render`), the templated-string checks and
the reference tables of docs/pipeline-reference.md.

Why dataclass metadata rather than pydantic or msgspec models: the spec objects stay plain frozen
dataclasses (typed for mypy, cheap to build, stored by the loader's cache codec field by field),
validation stays the compiled JSON Schema (fastjsonschema says yes in ~0.3 ms; jsonschema explains a
no, with the YAML position of every error), and the declarations are data a generator can walk.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

#: The largest integer every Airflow metadata database stores in an integer column.
MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class Shape:
    """A kind of YAML value: its JSON Schema, how the spec converts it, how docs name it.

    A shape with a `name` is shared: it lives once under the schema's `$defs` and is referenced.
    `problem` and `hint` explain a value that fails the shape's `pattern` (a regex is no help to a
    reader).
    """

    schema: dict[str, Any]
    doc_type: str
    convert: Callable[[Any], Any] | None = None
    name: str | None = None
    problem: str | None = None
    hint: str | None = None
    #: Like `convert`, for values that name a file relative to the pipeline file.
    convert_in_file: Callable[[Any, str], Any] | None = None


#: `required=AFTER_DEFAULTS`: a step must have it once `defaults.<kind>` is merged (e.g. `model`).
AFTER_DEFAULTS = "after defaults"

#: Where a declared field goes when a step becomes an operator.
SAME = "<same name>"  # the operator argument of the same name
REQUEST = "<request parameter>"  # a key of the operator's request-parameters dict (completion_kwargs, ...)


@dataclass(frozen=True)
class Declared:
    """One field, declared once. Used as `name: type = Declared(...).field()` in a spec dataclass."""

    shape: Shape
    description: str
    examples: tuple[Any, ...] = ()
    #: Jinja renders it at run time (model, message contents, embedding input): the checks parse it.
    templated: bool = False
    #: With `templated`: a value that is one whole `{{ expression }}` gives that expression's own
    #: value (a list, a dict, a number), not its text (`spec/native_values.py`). Text fields (model,
    #: message contents) stay text, as the API requires.
    native: bool = False
    #: The operator argument (for step fields) or DAG argument it becomes: SAME, REQUEST, a name, or
    #: None when the builder uses it otherwise (edges, the connection rule, ...).
    argument: str | None = SAME
    #: May be set for all steps of a kind in `defaults.<kind>`.
    in_defaults: bool = True
    required: bool | str = False  # True, False or AFTER_DEFAULTS
    #: What the docs say happens when the field is not set.
    default_text: str | None = None
    #: A spec dataclass whose declared fields make up this mapping's keys (`default_args`), or the
    #: keys of each mapping of this list (`messages`).
    nested: type | None = None

    def field(self, default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
        """The dataclass field carrying this declaration."""
        if factory is not None:
            return dataclasses.field(default_factory=factory, metadata={"declared": self})
        return dataclasses.field(default=default, metadata={"declared": self})


@dataclass(frozen=True)
class Group:
    """A dataclass whose declared fields are written inline in the enclosing YAML mapping
    (a step's `retries`, `retry_delay`, ... are a step's `options`)."""

    description: str

    def field(self, factory: Callable[[], Any]) -> Any:
        return dataclasses.field(default_factory=factory, metadata={"group": self})


@dataclass(frozen=True)
class DeclaredField:
    """A declared field of a spec class, as generators see it."""

    name: str
    declared: Declared
    group: str | None  # the attribute holding the group (e.g. "options"), None for a direct field


def group_class(cls: type, name: str) -> type:
    """The dataclass of group attribute `name` of `cls` (e.g. a step's `options`)."""
    for item in dataclasses.fields(cls):
        if item.name == name and item.default_factory is not dataclasses.MISSING:
            return type(item.default_factory())
    raise KeyError(name)


def templated_values(cls: type, raw: Any, base: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, text) of every string Jinja renders in `raw`, plain data for a `cls` object: its
    `templated` fields and those of the declared objects it holds (message contents)."""
    if not isinstance(raw, dict):
        return
    for item in template_fields(cls):
        value = raw.get(item.name)
        declared = item.declared
        if declared.nested is not None and isinstance(value, list):
            for index, entry in enumerate(value):
                yield from templated_values(declared.nested, entry, (*base, item.name, index))
        elif declared.templated and isinstance(value, str):
            yield (*base, item.name), value
        elif declared.templated and isinstance(value, list):
            for index, text in enumerate(value):
                if isinstance(text, str):
                    yield (*base, item.name, index), text


_DECLARED_FIELDS: dict[type, tuple[DeclaredField, ...]] = {}
_TEMPLATE_FIELDS: dict[type, tuple[DeclaredField, ...]] = {}


def template_fields(cls: type) -> tuple[DeclaredField, ...]:
    """The declared fields of `cls` that are templated or hold declared objects: the only ones the
    template walks (`templated_values`, `model.templated_strings`) look at, for every step of every
    file; cached per class like `declared_fields`."""
    cached = _TEMPLATE_FIELDS.get(cls)
    if cached is None:
        cached = _TEMPLATE_FIELDS[cls] = tuple(
            item for item in declared_fields(cls) if item.declared.templated or item.declared.nested is not None
        )
    return cached


def declared_fields(cls: type) -> tuple[DeclaredField, ...]:
    """Every declared field of `cls`, in declaration order, groups flattened in place.

    Cached per class: the loader maps every step of every pipeline through it on each DAG-folder
    parse, and the declarations never change at run time."""
    cached = _DECLARED_FIELDS.get(cls)
    if cached is None:
        found: list[DeclaredField] = []
        for item in dataclasses.fields(cls):
            if "declared" in item.metadata:
                found.append(DeclaredField(item.name, item.metadata["declared"], None))
            elif "group" in item.metadata and item.default_factory is not dataclasses.MISSING:
                group_fields = declared_fields(type(item.default_factory()))
                found += (DeclaredField(inner.name, inner.declared, item.name) for inner in group_fields)
        cached = _DECLARED_FIELDS[cls] = tuple(found)
    return cached


def plain_value(value: Any) -> Any:
    """A spec value as plain data for Airflow: tuples become lists, declared objects (a message,
    default_args) mappings of their fields that are set."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:  # most values: checked first, the loader maps every field of every step
        return value
    if kind is tuple:
        return [plain_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain = {}
        for item in declared_fields(kind):
            field_value = getattr(value, item.name)
            if field_value is not None and field_value != ():
                plain[item.name] = plain_value(field_value)
        return plain
    return value


_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


# -- shapes ------------------------------------------------------------------------------------


def _integral(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer; Airflow and the API want an int, so 3.0 becomes 3."""
    return int(value) if isinstance(value, float) and math.isfinite(value) else value


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def integer(minimum: int, maximum: int = MAX_INT) -> Shape:
    text = f"integer ≥ {minimum}" if maximum == MAX_INT else f"integer {minimum}–{maximum}"
    return Shape({"type": "integer", "minimum": minimum, "maximum": maximum}, text, _integral)


def number(minimum: float, maximum: float) -> Shape:
    return Shape({"type": "number", "minimum": minimum, "maximum": maximum}, f"number {minimum:g}–{maximum:g}")


STRING = Shape({"type": "string"}, "string")
NON_EMPTY_STRING = Shape({"type": "string", "minLength": 1}, "string")
BOOLEAN = Shape({"type": "boolean"}, "boolean")
MAPPING = Shape({"type": "object"}, "mapping", dict)
STRING_LIST = Shape(
    {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}, "list of strings", _tuple
)


def one_or_list(
    item: dict[str, Any],
    *,
    min_items: int = 1,
    max_items: int | None = None,
    doc_type: str = "string or list of strings",
    always_list: bool = False,
) -> Shape:
    """One value or a list of them; `always_list`: the spec holds a tuple either way."""
    listed: dict[str, Any] = {"type": "array", "minItems": min_items, "items": item}
    if max_items is not None:
        listed["maxItems"] = max_items
    return Shape({"anyOf": [item, listed]}, doc_type, _as_tuple if always_list else _tuple)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def enum(*values: str) -> Shape:
    return Shape({"enum": list(values)}, " or ".join(f"`{value}`" for value in values))

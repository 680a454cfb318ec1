"""Spec objects ⇄ JSON data, driven by the dataclasses' own fields and field types.

The validation cache stores outcomes as data, not code (no pickle: reading an entry can run
nothing). Nothing here names a field of the model: a field added to `spec.model` next week is
stored and read back with no change here, as long as its type is made of what this module knows —
str, int, float, bool, None, `object` (plain JSON values, as YAML gives them), Literal, datetime
(aware or naive, fixed offsets), timedelta, tuple, list, dict with str keys, dataclasses, and unions
whose members the JSON shape tells apart (a union of dataclasses is told apart by a field with a
distinct string default in each, as `kind` does for `ChatStep | EmbeddingStep`). A type it cannot
store unambiguously fails when its codec is built, not silently when an entry is read.

`decode` is strict: data that does not have exactly the expected shape raises (the cache then
treats the entry as a miss); `encode` raises `Unstorable` for a value JSON cannot hold exactly. A
dataclass field that is None and defaults to None is not stored, and reads back as None.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


class Unstorable(TypeError):
    """A value this codec cannot store so that it reads back exactly."""


def encode(value: Any, annotation: Any) -> Any:
    return _codec(annotation)[0](value)


def decode(data: Any, annotation: Any) -> Any:
    return _codec(annotation)[1](data)


_CODECS: dict[Any, tuple[Encoder, Decoder, frozenset[str]]] = {}
_JSON_KIND = {str: "str", bool: "bool", int: "int", float: "float", list: "list", dict: "dict", type(None): "null"}
_SCALARS = {str: (str,), int: (int,), bool: (bool,), float: (float, int), type(None): (type(None),)}


def _codec(annotation: Any) -> tuple[Encoder, Decoder, frozenset[str]]:
    """(encode, decode, the JSON kinds its data can have), built once per type."""
    built = _CODECS.get(annotation)
    if built is None:
        built = _CODECS[annotation] = _build(annotation)
    return built


def _build(annotation: Any) -> tuple[Encoder, Decoder, frozenset[str]]:
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SCALARS:
        return _scalar(_SCALARS[annotation])
    if annotation is object or annotation is Any:
        return _plain_json, _plain_json, frozenset(_JSON_KIND.values())
    if origin is typing.Literal:
        return _literal(arguments)
    if annotation is datetime:
        return _encode_datetime, _decode_datetime, frozenset({"str"})
    if annotation is timedelta:
        return _encode_timedelta, _decode_timedelta, frozenset({"list"})
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return _union(arguments)
    if origin in (tuple, list):
        return _sequence(origin, arguments)
    if origin is dict and arguments and arguments[0] is str:
        return _mapping(arguments[1])
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return _dataclass(annotation)
    raise TypeError(f"the cache codec cannot store values of type {annotation!r}")


def _scalar(types: tuple[type, ...]) -> tuple[Encoder, Decoder, frozenset[str]]:
    def check(value: Any) -> Any:
        if type(value) not in types:  # exact: a bool is not an int here, nor an int a str
            raise Unstorable(f"expected {types[0].__name__}, got {type(value).__name__}")
        return value

    return check, check, frozenset(_JSON_KIND[kind] for kind in types)


def _plain_json(value: Any) -> Any:
    """Plain JSON values (what YAML gives): checked, since a tuple or an int key would not read back."""
    kind = type(value)
    if kind is list:
        return [_plain_json(item) for item in value]
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise Unstorable("a mapping key is not a string")
        return {key: _plain_json(item) for key, item in value.items()}
    if kind in (str, int, float, bool, type(None)):
        return value
    raise Unstorable(f"{kind.__name__} is not a plain JSON value")


def _literal(values: tuple[Any, ...]) -> tuple[Encoder, Decoder, frozenset[str]]:
    allowed = frozenset(values)

    def check(value: Any) -> Any:
        if type(value) not in _JSON_KIND or value not in allowed:
            raise Unstorable(f"{value!r} is not one of {sorted(map(repr, allowed))}")
        return value

    return check, check, frozenset(_JSON_KIND[type(value)] for value in values)


def _encode_datetime(value: Any) -> str:
    if type(value) is not datetime or not (value.tzinfo is None or type(value.tzinfo) is timezone):
        raise Unstorable("only datetimes with no zone or a fixed offset are stored")
    return value.isoformat()


def _decode_datetime(data: Any) -> datetime:
    if type(data) is not str:
        raise Unstorable("a datetime is stored as text")
    return datetime.fromisoformat(data)


def _encode_timedelta(value: Any) -> list[int]:
    if type(value) is not timedelta:
        raise Unstorable(f"expected timedelta, got {type(value).__name__}")
    return [value.days, value.seconds, value.microseconds]


def _decode_timedelta(data: Any) -> timedelta:
    days, seconds, microseconds = data
    if not all(type(part) is int for part in data):
        raise Unstorable("a timedelta is stored as three integers")
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


def _sequence(origin: Any, arguments: tuple[Any, ...]) -> tuple[Encoder, Decoder, frozenset[str]]:
    if origin is tuple and not (len(arguments) == 2 and arguments[1] is Ellipsis):
        raise TypeError(f"the cache codec stores tuple[X, ...] only, not tuple{list(arguments)}")
    encode_item, decode_item, _ = _codec(arguments[0])

    def encode_sequence(value: Any) -> list[Any]:
        if type(value) is not origin:
            raise Unstorable(f"expected {origin.__name__}, got {type(value).__name__}")
        return [encode_item(item) for item in value]

    def decode_sequence(data: Any) -> Any:
        if type(data) is not list:
            raise Unstorable("a sequence is stored as a list")
        return origin(decode_item(item) for item in data)

    return encode_sequence, decode_sequence, frozenset({"list"})


def _mapping(value_type: Any) -> tuple[Encoder, Decoder, frozenset[str]]:
    encode_value, decode_value, _ = _codec(value_type)

    def encode_mapping(value: Any) -> dict[str, Any]:
        if type(value) is not dict or not all(type(key) is str for key in value):
            raise Unstorable("expected a dict with string keys")
        return {key: encode_value(item) for key, item in value.items()}

    def decode_mapping(data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise Unstorable("a mapping is stored as an object")
        return {key: decode_value(item) for key, item in data.items()}

    return encode_mapping, decode_mapping, frozenset({"dict"})


def _dataclass(cls: type) -> tuple[Encoder, Decoder, frozenset[str]]:
    hints = typing.get_type_hints(cls)
    fields = [(field.name, *_codec(hints[field.name])[:2]) for field in dataclasses.fields(cls)]
    # A field that is None and defaults to None is left out of the stored object (most step
    # options are unset: a 10-step entry shrinks from 9 to about 4 KB, which every cold load
    # encodes and writes and every warm load reads), and read back as None.
    omitted_when_none = {field.name for field in dataclasses.fields(cls) if field.default is None}
    # Decoding is the warm path of every DAG-folder parse: a field of plain JSON type (str, int,
    # Literal, ...) is checked inline instead of through a call, and `X | None` skips the union.
    plan = [
        (name, name in omitted_when_none, *_fast_decoder(hints[name], decode_field)) for name, _, decode_field in fields
    ]
    # Rebuilt as pickle did, without calling __init__: the values were validated when first built.
    rebuild_by_dict = not hasattr(cls, "__slots__")

    # Encoding is the cold path (every changed file): plain fields are checked inline as well.
    encode_plan = [
        (name, name in omitted_when_none, *_fast_encoder(hints[name], encode_field)) for name, encode_field, _ in fields
    ]

    def encode_object(value: Any) -> dict[str, Any]:
        if type(value) is not cls:
            raise Unstorable(f"expected {cls.__name__}, got {type(value).__name__}")
        encoded = {}
        for name, omitted, plain_types, encode_field in encode_plan:
            item = getattr(value, name)
            if item is None and omitted:
                continue
            if plain_types is None:
                item = encode_field(item)
            elif type(item) not in plain_types:
                raise Unstorable(f"{cls.__name__}.{name}: {type(item).__name__} cannot be stored here")
            encoded[name] = item
        return encoded

    def decode_object(data: Any) -> Any:
        if type(data) is not dict:
            raise Unstorable(f"not a stored {cls.__name__}")
        values: dict[str, Any] = {}
        found = 0
        for name, omitted, plain_types, decode_field in plan:
            item = data.get(name, _ABSENT)
            if item is _ABSENT:
                if not omitted:
                    raise Unstorable(f"{cls.__name__}.{name} is missing")
                values[name] = None
                continue
            found += 1
            if plain_types is None:
                item = decode_field(item)
            elif type(item) not in plain_types:
                raise Unstorable(f"{cls.__name__}.{name}: {type(item).__name__} is not stored here")
            values[name] = item
        if found != len(data):  # with the fields found, exactly the fields of `cls`
            raise Unstorable(f"not a stored {cls.__name__}: unknown fields")
        if not rebuild_by_dict:
            return cls(**values)
        instance: Any = object.__new__(cls)
        instance.__dict__.update(values)
        return instance

    return encode_object, decode_object, frozenset({"dict"})


_ABSENT: Any = object()


def _fast_decoder(annotation: Any, decode_field: Decoder) -> tuple[tuple[type, ...] | None, Decoder]:
    """(the JSON types that decode to themselves, or None; else the decoder to call)."""
    plain = _plain_types(annotation)
    if plain is not None:
        return plain, decode_field
    inner = _optional_of(annotation)
    if inner is not None:
        decode_inner = _codec(inner)[1]

        def decode_optional(data: Any) -> Any:
            return None if data is None else decode_inner(data)

        return None, decode_optional
    return None, decode_field


def _fast_encoder(annotation: Any, encode_field: Encoder) -> tuple[tuple[type, ...] | None, Encoder]:
    """`_fast_decoder`'s twin for encoding: plain JSON types checked inline, `X | None` unwrapped."""
    plain = _plain_types(annotation)
    if plain is not None:
        return plain, encode_field
    inner = _optional_of(annotation)
    if inner is None:
        return None, encode_field
    encode_inner = _codec(inner)[0]

    def encode_optional(value: Any) -> Any:
        return None if value is None else encode_inner(value)

    return None, encode_optional


def _optional_of(annotation: Any) -> Any:
    """X for `X | None` (Optional[X]), else None."""
    members = typing.get_args(annotation)
    if _is_union(annotation) and len(members) == 2 and type(None) in members:
        return next(member for member in members if member is not type(None))
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Union or type(annotation).__name__ == "UnionType"


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    members = typing.get_args(annotation)
    if _is_union(annotation) and all(member in _SCALARS for member in members):
        return tuple(kind for member in members for kind in _SCALARS[member])
    return None


def _union(members: tuple[Any, ...]) -> tuple[Encoder, Decoder, frozenset[str]]:
    codecs = [(member, *_codec(member)) for member in members]
    by_kind: dict[str, list[tuple[Any, Decoder]]] = {}
    for member, _, decode_member, kinds in codecs:
        for kind in kinds:
            by_kind.setdefault(kind, []).append((member, decode_member))
    decoders: dict[str, Decoder] = {}
    for kind, candidates in by_kind.items():
        decoders[kind] = candidates[0][1] if len(candidates) == 1 else _discriminated([m for m, _ in candidates])
    # The first member the value may be (`_member_test`), tested without typing calls per value.
    encoders = [(*_member_test(member), encode_member) for member, encode_member, _, _ in codecs]

    def encode_union(value: Any) -> Any:
        kind = type(value)
        for literals, types, encode_member in encoders:
            if (kind in types) if literals is None else (value in literals):
                return encode_member(value)
        raise Unstorable(f"{type(value).__name__} is none of {members}")

    def decode_union(data: Any) -> Any:
        decoder = decoders.get(_JSON_KIND.get(type(data), ""))
        if decoder is None:
            raise Unstorable(f"no member of {members} is stored as {type(data).__name__}")
        return decoder(data)

    return encode_union, decode_union, frozenset(by_kind)


class _AnyType(frozenset):  # type: ignore[type-arg]
    """Contains every type: the test of an `object` / `Any` member."""

    def __contains__(self, item: object) -> bool:
        return True


def _member_test(member: Any) -> tuple[tuple[Any, ...] | None, Any]:
    """(the Literal's values, None) or (None, the exact types a value of `member` may have): a
    value may be a member when its type is the member's origin (float: or int), any value may be
    `object` / `Any`, and a Literal holds its values."""
    origin = typing.get_origin(member) or member
    if origin is typing.Literal:
        return typing.get_args(member), frozenset()
    if member is float:
        return None, frozenset({float, int})
    if member in (object, Any):
        return None, _AnyType()
    return None, frozenset({origin})


def _discriminated(members: list[Any]) -> Decoder:
    """Dataclasses sharing a JSON shape, told apart by a field whose default differs in each."""
    if not all(dataclasses.is_dataclass(member) for member in members):
        raise TypeError(f"the cache codec cannot tell {members} apart in JSON")
    defaults = [
        {field.name: field.default for field in dataclasses.fields(member) if isinstance(field.default, str)}
        for member in members
    ]
    for name in defaults[0]:
        tags = [default.get(name) for default in defaults]
        if None not in tags and len(set(tags)) == len(tags):
            return _tagged_decoder(name, {tag: _codec(member)[1] for tag, member in zip(tags, members, strict=True)})
    raise TypeError(f"the cache codec cannot tell {members} apart: no field with a distinct default in each")


def _tagged_decoder(tag_field: str, decoders: dict[Any, Decoder]) -> Decoder:
    def decode_tagged(data: Any) -> Any:
        return decoders[data[tag_field]](data)

    return decode_tagged

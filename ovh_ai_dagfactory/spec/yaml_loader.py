"""Safe YAML → plain data, keeping the node tree so errors can point at a line and a column.

PyYAML's C parser composes the node tree (fast, no Python objects built from tags); we then
construct plain JSON-like data ourselves instead of using PyYAML's constructor, because we need
what it silently drops or allows: duplicate keys (it keeps the last), aliases that expand into
millions of nodes (billion laughs), arbitrary tags. The node tree is kept; positions are looked
up from it only when something needs one (`PositionIndex`), so a valid file pays nothing for them.

Deliberate choices for the pipeline format:
- mapping keys are always strings (the key's source text), since every key in the format is a name;
- timestamps stay strings (`start_date: 2024-01-01` → "2024-01-01"): the data stays JSON, the schema
  checks the shape and the spec converts to an aware datetime;
- only the core tags (str, int, float, bool, null, seq, map, merge `<<`) are accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid

try:  # the C parser is ~10x faster; the pure-Python one behaves the same
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _BaseLoader = yaml.SafeLoader

#: Values constructed per file; a 10-step pipeline has ~200. Past this, a file either expands
#: aliases into each other (a "billion laughs" bomb) or is simply far larger than a pipeline needs;
#: the message says which. The file size cap (parse.max_file_bytes) bounds the work before it.
MAX_NODES = 200_000
#: Nesting depth; the format needs 6, recursion limits would bite long before a real need.
MAX_DEPTH = 64

PathKey = Union[str, int]
Path = tuple[PathKey, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


class SafePipelineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The C safe loader, used only to compose nodes; construction is ours (see module doc)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # The C composer calls this Python method for every scalar (a third of a valid file's YAML
        # time). The tag of a scalar depends only on its text and on whether it was quoted (no path
        # resolvers are registered), and pipelines repeat their keys and values, so tags are kept.
        if kind is not ScalarNode or len(value) > _MAX_RESOLVED_LENGTH:  # long texts rarely repeat
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = _RESOLVED_TAGS.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_RESOLVED_TAGS) >= _MAX_RESOLVED_TAGS:
                _RESOLVED_TAGS.clear()  # bounded: a folder of long unique prompts cannot grow it
            _RESOLVED_TAGS[key] = tag
        return tag


_RESOLVED_TAGS: dict[tuple[str, tuple[bool, bool]], str] = {}
_MAX_RESOLVED_TAGS = 4096
_MAX_RESOLVED_LENGTH = 200


class YamlProblem(Exception):
    """A problem in the YAML itself, at a 0-based node mark; turned into a PipelineError by `load`."""

    def __init__(self, message: str, line: int, column: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.hint = message, line, column, hint
        self.bomb = False


@dataclass(frozen=True)
class LoadedDocument:
    data: Any
    root: Node
    text: str

    @property
    def positions(self) -> PositionIndex:
        return PositionIndex(self.root, self.text)


def load(text: str, source_file: str) -> LoadedDocument:
    """Compose and construct one YAML document; PipelineInvalid (one error) for any YAML problem."""
    try:
        root = _compose(text)
        data = _Constructor(root).construct(root, 0)
    except YamlProblem as problem:
        error = PipelineError(source_file, problem.line + 1, problem.column + 1, problem.message, problem.hint)
        raise PipelineInvalid([error]) from None
    return LoadedDocument(data=data, root=root, text=text)


def _compose(text: str) -> Node:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot come from a file, only from callers
        line, column = _offset_to_position(text, exc.start)
        raise YamlProblem("text contains an invalid character (a lone surrogate)", line, column) from None
    loader = SafePipelineLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = _yaml_message(exc)
        raise YamlProblem(message, mark.line if mark else 0, mark.column if mark else 0) from None
    except yaml.reader.ReaderError as exc:
        line, column = _offset_to_position(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlProblem(f"control character U+{code:04X} is not allowed in YAML", line, column) from None
    except yaml.YAMLError as exc:  # e.g. the C emitter/parser's plain errors
        raise YamlProblem(f"not valid YAML: {exc}", 0, 0) from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblem("the file is empty: a pipeline needs at least 'steps'", 0, 0)
    composed: Node = node
    return composed


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "invalid YAML"
    if "expected a single document" in str(exc.context or "") or "single document" in problem:
        return "a pipeline file holds one YAML document; found a second one ('---')"
    message = f"YAML syntax error: {problem}"
    if exc.context:
        where = f" started on line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message += f" ({exc.context}{where})"
    return message


def _offset_to_position(text: str, offset: int) -> tuple[int, int]:
    """0-based line and column of a character offset."""
    before = text[:offset]
    line = before.count("\n")
    return line, offset - (before.rfind("\n") + 1)


class _Constructor:
    """Builds plain data from nodes, counting nodes (alias bombs) and tracking the alias stack (cycles)."""

    def __init__(self, root: Node) -> None:
        self.root = root
        self.count = 0
        self.active: set[int] = set()
        self.expanded: set[int] = set()  # collections constructed once: meeting one again is an alias
        self.aliases = False

    def construct(self, node: Node, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._too_many(node)
        if depth > MAX_DEPTH:
            raise YamlProblem(
                f"values are nested more than {MAX_DEPTH} levels deep", node.start_mark.line, node.start_mark.column
            )
        if isinstance(node, ScalarNode):
            return _scalar(node)
        key = id(node)
        if key in self.active:  # an alias to one of its own ancestors: infinite data
            raise YamlProblem(
                "an alias refers to a value that contains it (recursive anchor)",
                node.start_mark.line,
                node.start_mark.column,
            )
        if key in self.expanded:
            self.aliases = True
        else:
            self.expanded.add(key)
        self.active.add(key)
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    raise _bad_tag(node)
                return [self.construct(item, depth + 1) for item in node.value]
            if node.tag != _MAP or not isinstance(node, MappingNode):
                raise _bad_tag(node)
            return self._mapping(node, depth)
        finally:
            self.active.discard(key)

    def _too_many(self, node: Node) -> YamlProblem:
        """The limit's message tells the truth: alias expansion when aliases were expanded, else size."""
        if self.aliases:
            problem = YamlProblem(
                f"the document expands to more than {MAX_NODES} values: anchors and aliases are repeated "
                "inside each other",
                node.start_mark.line,
                node.start_mark.column,
                "use each anchor a few times only; a pipeline never needs nested alias expansion",
            )
            problem.bomb = True
            return problem
        steps = _entries(self.root, "steps")
        what = f" ({steps} steps)" if steps else ""
        return YamlProblem(
            f"the file holds more than {MAX_NODES} values{what}, far more than a pipeline needs",
            0,
            0,
            "split it into several pipeline files",
        )

    def _mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self._merge_into(merged, value_node, depth)
                continue
            name = mapping_key(key_node)
            first = seen.get(name)
            if first is not None:
                raise YamlProblem(
                    f"duplicate key '{name}' (first defined on line {first.start_mark.line + 1})",
                    key_node.start_mark.line,
                    key_node.start_mark.column,
                    "YAML keeps only the last value; remove or rename one of them",
                )
            seen[name] = key_node
            try:
                result[name] = self.construct(value_node, depth + 1)
            except YamlProblem as problem:
                if depth == 0 and problem.bomb:
                    # Aliased nodes carry their anchor's position; name the top-level key instead.
                    raise YamlProblem(
                        f"the value of '{name}' expands to more than {MAX_NODES} values: "
                        "anchors and aliases are repeated inside each other",
                        key_node.start_mark.line,
                        key_node.start_mark.column,
                        problem.hint,
                    ) from None
                raise
        for name, value in merged.items():  # explicit keys win over `<<` merges, as in YAML
            result.setdefault(name, value)
        return result

    def _merge_into(self, merged: dict[str, Any], value_node: Node, depth: int) -> None:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                raise YamlProblem("'<<' merges mappings only", source.start_mark.line, source.start_mark.column)
            for name, value in self.construct(source, depth + 1).items():
                merged.setdefault(name, value)  # earlier sources win


def _entries(root: Node, name: str) -> int:
    """How many entries the top-level mapping `name` has (0 when there is none)."""
    if isinstance(root, MappingNode):
        for key_node, value_node in root.value:
            if isinstance(key_node, ScalarNode) and key_node.value == name and isinstance(value_node, MappingNode):
                return len(value_node.value)
    return 0


def mapping_key(node: Node) -> str:
    """Keys are names: their source text, whatever YAML would resolve them to (`on`, `1`, `null`)."""
    if not isinstance(node, ScalarNode):
        raise YamlProblem(
            "a mapping key must be a plain name, not a list or a mapping", node.start_mark.line, node.start_mark.column
        )
    return str(node.value)


def _bad_tag(node: Node) -> YamlProblem:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return YamlProblem(
        f"YAML tag '{tag}' is not allowed in a pipeline file",
        node.start_mark.line,
        node.start_mark.column,
        "only plain YAML values are accepted: strings, numbers, booleans, null, lists, mappings",
    )


def _scalar(node: ScalarNode) -> Any:
    tag = node.tag
    if tag == _STR:
        return node.value
    if tag == _TIMESTAMP:
        return node.value  # see module doc: dates stay text until the spec converts them
    constructor = _SCALARS.get(tag)
    if constructor is None:
        raise _bad_tag(node)
    try:
        value = constructor(_SCALAR_CONSTRUCTOR, node)
    except (ValueError, yaml.YAMLError):
        raise YamlProblem(
            f"'{node.value}' is not a valid {tag.rsplit(':', 1)[-1]}", node.start_mark.line, node.start_mark.column
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise YamlProblem(f"'{node.value}' is not a finite number", node.start_mark.line, node.start_mark.column)
    return value


_SCALAR_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALARS = {
    _INT: yaml.constructor.SafeConstructor.construct_yaml_int,
    _FLOAT: yaml.constructor.SafeConstructor.construct_yaml_float,
    _BOOL: yaml.constructor.SafeConstructor.construct_yaml_bool,
    _NULL: yaml.constructor.SafeConstructor.construct_yaml_null,
}


class PositionIndex:
    """Finds where a value (or a mapping key) sits in the file, by its path in the plain data.

    Walks the kept node tree on demand: only files with errors, and a handful of step positions,
    ever ask. Positions are 1-based. A path that cannot be followed (merged keys, a value the
    schema complains about before it exists) falls back to the deepest node reached.
    """

    def __init__(self, root: Node, text: str = "") -> None:
        self.root = root
        self.text = text

    def line_text(self, line: int) -> str:
        """The source text of 1-based `line` ("" past the end)."""
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def node(self, path: Path, *, key: bool = False) -> Node:
        node = self.root
        for index, part in enumerate(path):
            last = index == len(path) - 1
            found = _child(node, part, want_key=key and last)
            if found is None:
                return node
            node = found
        return node

    def value(self, path: Path) -> tuple[int, int]:
        return _position(self.node(path))

    def key_positions(self, path: Path) -> dict[str, tuple[int, int]]:
        """Positions of all the keys written in the mapping at `path`, in one pass."""
        node = self.node(path)
        if not isinstance(node, MappingNode):
            return {}
        return {key.value: _position(key) for key, _ in node.value if isinstance(key, ScalarNode) and key.tag != _MERGE}

    def key(self, path: Path) -> tuple[int, int]:
        """Position of the key naming the last path element (falls back to the value)."""
        return _position(self.node(path, key=True))


def _child(node: Node, part: PathKey, *, want_key: bool) -> Node | None:
    if isinstance(node, MappingNode):
        found: Node | None = None
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE and key_node.value == str(part):
                found = key_node if want_key else value_node
        if found is None:  # maybe it came from a `<<` merge
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    for source in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                        child = _child(source, part, want_key=want_key)
                        if child is not None:
                            return child
        return found
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: Node = node.value[part]
        return item
    return None


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1

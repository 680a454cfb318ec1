"""Which earlier steps a templated string reads, as `steps.<id>.<output>` or `steps['<id>']`.

Found on Jinja's own syntax tree, so text that merely looks like a reference (inside a string
literal, say) is not counted; plain `{{ dotted.names }}` templates take a regex shortcut that gives
the same answer. Strings without `steps` never reach either.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@lru_cache(maxsize=4096)
def referenced_steps(text: str) -> tuple[str, ...]:
    """Step ids referenced in `text`, in order of first appearance; () when the text has none
    or is not valid Jinja (syntax errors are reported by the checks, not here)."""
    if "steps" not in text:
        return ()
    from jinja2 import TemplateSyntaxError

    try:
        references = step_references(text)
    except (TemplateSyntaxError, RecursionError):
        return ()
    return tuple(dict.fromkeys(step_id for step_id, _output, _detail, _line in references))


#: Which outputs each kind of step provides at run time (`steps.<id>.<output>`). A chat step whose
#: items all run in one task (input_file, or for_each_mode: in_task) is a "chat_job": its answers
#: in item order, and the URI it wrote them under with `output`.
OUTPUTS_BY_KIND = {
    "chat": ("content", "response", "json"),
    "embedding": ("embeddings", "response", "output"),
    "chat_job": ("contents", "jsons", "output"),
}
#: Kinds whose outputs are already those of many items: `mapped` does not pluralise them.
_ALWAYS_MANY = ("chat_job",)
#: A step with `for_each` runs once per item; later steps read each output as a list in item order,
#: under its plural name (`embeddings`, already plural, gives the vectors of all items in order).
PLURAL_OF = {"content": "contents", "response": "responses", "json": "jsons", "output": "outputs"}
SINGULAR_OF = {plural: singular for singular, plural in PLURAL_OF.items()}
#: Outputs a step provides only when it declares the field named here.
OUTPUT_NEEDS = {"json": "output_schema", "jsons": "output_schema", "output": "output", "outputs": "output"}


def outputs_of(kind: str, mapped: bool) -> tuple[str, ...]:
    """The outputs a step of `kind` provides: plural names when it has `for_each` (`mapped`)."""
    outputs = OUTPUTS_BY_KIND.get(kind, ())
    return tuple(PLURAL_OF.get(name, name) for name in outputs) if mapped and kind not in _ALWAYS_MANY else outputs


def step_kind(step: Any) -> Any:
    """The kind `steps.<id>` of a step's plain data reads as: its `type`, or "chat_job" for a chat step
    whose items run in one task (`input_file`, or `for_each` with `for_each_mode: in_task`)."""
    kind = step.get("type") if isinstance(step, dict) else None
    in_task = step.get("for_each") is not None and step.get("for_each_mode") == "in_task"
    if kind == "chat" and step.get("mode") != "batch" and (step.get("input_file") is not None or in_task):
        return "chat_job"
    return kind


def answers_per_item(step: Any) -> bool:
    """Whether later steps read a step's outputs as lists, one entry per item (plural names): a
    for_each step run as mapped tasks or as a batch, and a batch chat step over an input_file."""
    if not isinstance(step, dict) or step_kind(step) == "chat_job":
        return False
    batch_file = step.get("type") == "chat" and step.get("mode") == "batch" and step.get("input_file") is not None
    return step.get("for_each") is not None or batch_file


def mapped_counterpart(output: str, mapped: bool) -> str | None:
    """The name a user meant when reading `output` of a step that is (`mapped`) or is not run per
    item: `content` of a for_each step is `contents`, and the other way round."""
    return PLURAL_OF.get(output) if mapped else SINGULAR_OF.get(output)


#: (step id, output or None, the name read inside the output or None, Jinja line number):
#: `steps.classify.json.label` is ("classify", "json", "label", 1).
Reference = tuple[str, str | None, str | None, int]


@lru_cache(maxsize=4096)
def step_references(text: str) -> tuple[Reference, ...]:
    """Every `steps.<id>[.<output>[.<name>]]` in `text`, in order.

    Raises jinja2.TemplateSyntaxError: the checks report it with a position.
    """
    simple = _simple_references(text)
    if simple is not None:
        return simple
    from jinja2 import nodes

    tree = parse_environment().parse(text)
    found: list[Reference] = []
    # `steps.a.content` is Getattr(Getattr(Name steps, a), content): look one level up for the output.
    parents: dict[int, nodes.Node] = {}
    # find_all is typed as yielding plain expressions; these two node types both have `.node`.
    accesses: list[nodes.Getattr | nodes.Getitem] = list(tree.find_all((nodes.Getattr, nodes.Getitem)))  # type: ignore[arg-type]
    for parent in accesses:
        parents[id(parent.node)] = parent
    for node in accesses:
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "steps"):
            continue
        step_id = _name_of(node)
        if step_id is None:
            continue
        outer = parents.get(id(node))
        inner = parents.get(id(outer)) if outer is not None else None
        found.append((step_id, _name_of(outer), _name_of(inner), node.lineno))
    return tuple(found)


def _name_of(node: object) -> str | None:
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


@lru_cache(maxsize=1)
def parse_environment() -> jinja2.Environment:
    # Parsing only; Airflow renders with its own sandboxed environment using the same default syntax.
    from jinja2 import Environment

    return Environment()


# Most templates are plain text with `{{ dotted.names }}`; for those a regex gives the same answer
# as Jinja's parser at ~1/30 of the cost (the DAG loader parses every file on every DAG-folder scan).
# Anything else (filters, tags, comments, whitespace control, odd spacing) goes to Jinja.
_SIMPLE_EXPRESSION = re.compile(r"(?<!\{)\{\{ *([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*) *\}\}")
#: Words Jinja's expression parser treats as operators or statements: never take the shortcut on them.
_JINJA_WORDS = frozenset(
    {
        "and",
        "or",
        "not",
        "in",
        "is",
        "if",
        "else",
        "elif",
        "for",
        "recursive",
        "true",
        "false",
        "none",
        "True",
        "False",
        "None",
    }
)


def _simple_references(text: str) -> tuple[Reference, ...] | None:
    """References when `text` holds only `{{ name.name... }}` expressions, else None (use Jinja)."""
    found: list[Reference] = []
    for match in _SIMPLE_EXPRESSION.finditer(text):
        names = match.group(1).split(".")
        if names[0] in _JINJA_WORDS:
            return None
        if names[0] == "steps" and len(names) > 1:
            output = names[2] if len(names) > 2 else None
            detail = names[3] if len(names) > 3 else None
            found.append((names[1], output, detail, text.count("\n", 0, match.start()) + 1))
    rest = _SIMPLE_EXPRESSION.sub("", text)
    if "{{" in rest or "{%" in rest or "{#" in rest:
        return None
    return tuple(found)

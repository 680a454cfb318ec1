"""The reference tables of docs/pipeline-reference.md, rendered from the field declarations.

The document keeps its prose; each table sits between `<!-- generated: NAME -->` and
`<!-- end generated -->` and is replaced by `render_reference`. `python -m
ovh_ai_dagfactory.spec.generate` rewrites the file; a test fails when it is out of date.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from ovh_ai_dagfactory.spec.declare import AFTER_DEFAULTS, Declared, declared_fields
from ovh_ai_dagfactory.spec.model import STEP_CLASSES, DefaultArgs, Message, Pipeline

_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)


def render_reference(text: str) -> str:
    """`text` with every generated block re-rendered; an unknown block name is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise KeyError(f"docs/pipeline-reference.md: no generated table named {name!r}")
        return match.group(1) + TABLES[name]() + match.group(4)

    return _BLOCK.sub(replace, text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _example(name: str, value: Any) -> str:
    if value is None:
        shown = "null"
    else:
        shown = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
        shown = shown.removesuffix("\n...").removesuffix("...").strip()
    return f"`{_cell(name + ': ' + shown)}`"


def _required(declared: Declared, kind: str | None) -> str:
    if declared.required is True:
        return "**yes**"
    if declared.required == AFTER_DEFAULTS and kind is not None:
        return f"yes, here or in `defaults.{kind}`"
    return "no"


def _description(declared: Declared) -> str:
    text = declared.description
    if declared.templated:
        text += " Rendered by Jinja when the task runs"
        text += "; one whole {{ expression }} gives its own value (a list stays a list)." if declared.native else "."
    if declared.default_text:
        text += f" Default: {declared.default_text}."
    return _cell(text)


def _table(cls: type, *, kind: str | None = None, required: bool = True, extra: list[str] | None = None) -> str:
    head = "| Key | Type | Required | Description | Example |" if required else "| Key | Type | Description | Example |"
    rows = [head, "|" + "---|" * (5 if required else 4)]
    rows += extra or []
    for item in declared_fields(cls):
        declared = item.declared
        example = _example(item.name, declared.examples[0]) if declared.examples else ""
        cells = [f"`{item.name}`", declared.shape.doc_type]
        if required:
            cells.append(_required(declared, kind))
        cells += [_description(declared), example]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _top_level() -> str:
    from ovh_ai_dagfactory.spec.schema_build import DEFAULTS, STEPS

    table = _table(Pipeline)
    rows = [
        f"| `defaults` | mapping | no | {_cell(DEFAULTS.description)} See below. | "
        f"{_example('defaults', DEFAULTS.examples[0])} |",
        f"| `steps` | mapping | **yes** | {_cell(STEPS.description)} | see below |",
    ]
    return table + "\n".join(rows) + "\n"


def _defaults() -> str:
    rows = ["| Key | Keys it takes |", "|---|---|"]
    for kind, cls in STEP_CLASSES.items():
        names = ", ".join(f"`{item.name}`" for item in declared_fields(cls) if item.declared.in_defaults)
        rows.append(f"| `{kind}` | {names} |")
    return "\n".join(rows) + "\n"


def _step(kind: str) -> Callable[[], str]:
    def render() -> str:
        type_row = f"| `type` | `{kind}` | **yes** | The kind of step. | `type: {kind}` |"
        return _table(STEP_CLASSES[kind], kind=kind, extra=[type_row])

    return render


TABLES: dict[str, Callable[[], str]] = {
    "top-level": _top_level,
    "default-args": lambda: _table(DefaultArgs, required=False),
    "defaults": _defaults,
    "chat-step": _step("chat"),
    "message": lambda: _table(Message, required=False),
    "embedding-step": _step("embedding"),
}

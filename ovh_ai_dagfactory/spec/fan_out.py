"""Fan-out (`for_each`): the task names it adds, and the rules `validate` checks for it.

A step with `for_each` becomes an Airflow mapped task. A literal list of plain items is expanded as
it is; a template (or a list holding templates) is rendered by one small task before the step, named
`<step id>__for_each`, whose result (the list) the step is expanded over — Airflow can only map over
a value known before the mapped task starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ovh_ai_dagfactory.spec.declare import templated_values
from ovh_ai_dagfactory.spec.yaml_loader import Path

#: Appended to a step id to name the task that renders its `for_each` template.
ITEMS_TASK_SUFFIX = "__for_each"
#: The names a for_each step's templates read: the item, and its position in the list (from 0).
ITEM_NAMES = ("item", "item_index")

#: (path, message, hint, at the key rather than the value)
Problem = tuple[Path, str, "str | None", bool]


def items_task_id(step_id: str) -> str:
    return step_id + ITEMS_TASK_SUFFIX


def needs_items_task(for_each: Any) -> bool:
    """Whether `for_each` is rendered at run time (a template, or a list holding one) rather than
    expanded as the literal list it is."""
    if isinstance(for_each, str):
        return True
    return isinstance(for_each, (list, tuple)) and any(
        isinstance(item, str) and ("{{" in item or "{%" in item) for item in for_each
    )


def fan_out_problems(step_id: str, step: dict[str, Any], cls: type, steps: dict[str, Any]) -> Iterator[Problem]:
    """What is wrong with a step's `for_each`, `max_parallel` and uses of `item` / `item_index`."""
    base = ("steps", step_id)
    for_each = step.get("for_each")
    if for_each is None:
        if "max_parallel" in step:
            yield (
                (*base, "max_parallel"),
                f"step '{step_id}' sets max_parallel but has no for_each",
                "max_parallel bounds how many items of a for_each step run at once: add for_each, or remove it",
                True,
            )
        if step.get("input_file") is not None and step.get("type") == "chat":
            return  # a chat step over a file: each line is its `item`
        for path, text in templated_values(cls, step, base):
            name = _item_name_read(text)
            if name is not None:
                yield (
                    path,
                    f"step '{step_id}' reads '{name}', which only steps with for_each have",
                    "add for_each to the step to run it once per item (or, for a chat step, input_file), or "
                    "remove the reference",
                    False,
                )
        return
    if not isinstance(for_each, (str, list, tuple)):
        return  # the schema reports the shape
    if isinstance(for_each, str):
        if _item_name_read(for_each) is not None:
            yield (
                (*base, "for_each"),
                "for_each cannot read item or item_index: they are what it defines",
                None,
                False,
            )
        elif "{{" in for_each and not _is_one_expression(for_each):
            yield (
                (*base, "for_each"),
                "for_each must be one {{ expression }} giving a list, with nothing around it",
                "for example {{ params.documents }} or {{ steps.extract.json.topics }}",
                False,
            )
    clash = items_task_id(step_id)
    if needs_items_task(for_each) and clash in steps:
        yield (
            ("steps", clash),
            f"step id '{clash}' is the name of the task that computes step '{step_id}''s for_each list",
            "rename this step",
            True,
        )


@lru_cache(maxsize=1024)
def _item_name_read(text: str) -> str | None:
    """`item` or `item_index` when the template reads it as a free name (not a loop variable of its
    own `{% for item in ... %}`), else None (also for invalid Jinja: the template checks report it)."""
    if "item" not in text:
        return None
    from jinja2 import TemplateSyntaxError, meta

    from ovh_ai_dagfactory.spec.references import parse_environment

    try:
        free = meta.find_undeclared_variables(parse_environment().parse(text))
    except (TemplateSyntaxError, RecursionError):
        return None
    return next((name for name in ITEM_NAMES if name in free), None)


def _is_one_expression(text: str) -> bool:
    from jinja2 import TemplateSyntaxError

    from ovh_ai_dagfactory.spec.native_values import whole_expression
    from ovh_ai_dagfactory.spec.references import parse_environment

    try:
        return whole_expression(parse_environment(), text) is not None
    except (TemplateSyntaxError, RecursionError):
        return True  # the template checks report the syntax error itself

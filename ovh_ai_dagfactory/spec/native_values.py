"""Native values: a templated field whose whole value is one `{{ expression }}` gives that value.

Airflow renders every template to text, so `input: "{{ params.documents }}"` with a list would embed
the list's string form as one text. For the fields declared `native` (an embedding step's `input`,
`for_each`), a value that is exactly one expression — surrounding whitespace aside — gives the
expression's own value instead: a list stays a list, a dict a dict, a number a number. Anything
else (text around the expression, two expressions, a `{% %}` block) renders to text as usual.

Unlike Airflow's `render_template_as_native_obj` (a DAG-wide switch), nothing is re-parsed: Airflow's
native mode runs `ast.literal_eval` on text results, so a model's answer "42" would become a number
and "[1, 2]" a list. Here a string value stays the string it is. The expression is evaluated by the
environment Airflow gives (sandboxed, with Airflow's filters and undefined handling).

Jinja only (no Airflow): `validate` uses `whole_expression` to check `for_each`, the operators use
`render_native` at run time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

#: The template variable the expression's value is assigned to (exported by a `{% set %}`).
_RESULT = "native_value"


class NotNative(Exception):
    """The value is not one whole expression: render it as text."""


def whole_expression(environment: jinja2.Environment, text: str) -> nodes.Expr | None:
    """The expression when `text` is exactly one `{{ expression }}` (whitespace around it aside),
    else None. Raises jinja2.TemplateSyntaxError for invalid Jinja."""
    stripped = text.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    from jinja2 import nodes

    body = environment.parse(stripped).body
    if len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1:
        expression = body[0].nodes[0]
        if not isinstance(expression, nodes.TemplateData):
            return expression
    return None


def render_native(environment: jinja2.Environment, text: str, context: Mapping[str, Any]) -> Any:
    """The value of `text`'s one expression in `context`; NotNative when `text` is not one.

    Evaluated as Airflow renders (its context mapping kept as it is, not copied into a dict, which
    would resolve every lazy entry and trigger Airflow 2's deprecation warnings), through a template
    holding only `{% set native_value = <expression> %}`, built from the parsed expression itself.
    """
    from jinja2 import Undefined, nodes

    expression = whole_expression(environment, text)
    if expression is None:
        raise NotNative(text)
    tree = nodes.Template([nodes.Assign(nodes.Name(_RESULT, "store", lineno=1), expression, lineno=1)], lineno=1)
    template = environment.from_string(tree)
    variables = copy.copy(context)
    if template.globals:
        for name, value in template.globals.items():
            if name not in variables:
                variables[name] = value  # type: ignore[index]  # Airflow's Context is a mutable mapping
    value = getattr(template.make_module(vars=variables, shared=True), _RESULT)  # type: ignore[arg-type]
    if isinstance(value, Undefined):
        return str(value)  # what text rendering gives: "" (or the error of a strict undefined)
    return value

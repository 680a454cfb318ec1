"""Rules of an embedding step's input that a JSON Schema cannot say clearly: texts come from `input`
or from `input_file`, exactly one of them, and the JSON Lines fields only go with a file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ovh_ai_dagfactory.spec.fan_out import Problem

#: Keys that only mean something with `input_file`.
_FILE_ONLY = ("text_field", "id_field", "input_conn_id")


def embedding_input_problems(step_id: str, step: dict[str, Any]) -> Iterator[Problem]:
    if step.get("type") != "embedding":
        return
    base = ("steps", step_id)
    has_input, has_file = "input" in step, "input_file" in step
    if has_input and has_file:
        yield (
            (*base, "input_file"),
            f"embedding step '{step_id}' has both input and input_file",
            "keep one: input for texts in the pipeline (or from a template), input_file for a file to stream",
            True,
        )
    elif not has_input and not has_file:
        yield (
            base,
            f"embedding step '{step_id}' has no input",
            "add input (a text, a list of texts, or a template giving them) or input_file (a file URI)",
            True,
        )
    if not has_file:
        for key in _FILE_ONLY:
            if key in step:
                yield ((*base, key), f"'{key}' of step '{step_id}' only applies with input_file", None, True)

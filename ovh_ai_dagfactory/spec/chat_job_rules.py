"""Rules of a chat step over many items in one task (chat at volume) that a JSON Schema cannot say
clearly: where its items come from (input_file, or for_each with for_each_mode: in_task, not both),
and the keys that only mean something then."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ovh_ai_dagfactory.spec.chat_job_fields import IN_TASK, IN_TASK_ONLY
from ovh_ai_dagfactory.spec.fan_out import Problem
from ovh_ai_dagfactory.spec.references import step_kind

_WHERE_ITEMS = "add input_file (a file of items), or for_each with for_each_mode: in_task"


def chat_job_problems(step_id: str, step: dict[str, Any]) -> Iterator[Problem]:
    if step.get("type") != "chat":
        return
    base = ("steps", step_id)
    has_file, for_each, mode = "input_file" in step, step.get("for_each"), step.get("for_each_mode")
    if has_file and for_each is not None:
        yield (
            (*base, "input_file"),
            f"chat step '{step_id}' has both input_file and for_each",
            "keep one: input_file for items in a file, for_each for a list in the pipeline (or from a template)",
            True,
        )
    if mode is not None and for_each is None:
        yield (
            (*base, "for_each_mode"),
            f"step '{step_id}' sets for_each_mode but has no for_each",
            "for_each_mode says how for_each items run: add for_each, or remove for_each_mode",
            True,
        )
    if mode == IN_TASK and "max_parallel" in step:
        yield (
            (*base, "max_parallel"),
            f"'max_parallel' of step '{step_id}' bounds mapped task instances, and for_each_mode: in_task runs one",
            "use max_concurrency (requests in flight in that task)",
            True,
        )
    if step.get("mode") == "batch":
        return  # batch_mode says what a batch step takes
    in_task = step_kind(step) == "chat_job"
    for key in IN_TASK_ONLY:
        if key in step and not in_task:
            yield (
                (*base, key),
                f"'{key}' of step '{step_id}' only applies when its items run in one task",
                _WHERE_ITEMS,
                True,
            )
    if "input_conn_id" in step and not has_file:
        yield (
            (*base, "input_conn_id"),
            f"'input_conn_id' of step '{step_id}' only applies with input_file",
            None,
            True,
        )
    if "id_field" in step and in_task and not has_file:
        yield ((*base, "id_field"), f"'id_field' of step '{step_id}' only applies with input_file", None, True)
    if "part_size" in step and in_task and "output" not in step:
        yield (
            (*base, "part_size"),
            f"'part_size' of step '{step_id}' only applies with output",
            "parts are what output holds; without output the results go to XCom",
            True,
        )

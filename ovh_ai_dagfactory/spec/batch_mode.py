"""Where `mode: batch` applies, as `validate` checks it.

A batch job runs a list of requests known when the task starts: the items of a for_each chat step
or the lines of its input_file (one chat request per item), or the texts of an embedding step's
`input` or `input_file`. What the batch operator does not do (yet) is refused here, at the key,
rather than hours later in a failed task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ovh_ai_dagfactory.spec.fan_out import Problem

#: Keys that mean nothing, or are not supported yet, in a batch step of each kind, with the reason.
_NOT_IN_BATCH = {
    "chat": {
        "output_schema": "structured output is not supported in batch mode yet",
        "max_parallel": "the platform runs a batch's items; max_parallel bounds task instances of sync mode",
        "requests_per_minute": "batch jobs are outside the per-minute rate limit",
        "for_each_mode": "a batch runs its items on the platform, neither mapped nor in a task",
        "output": "writing to storage is not supported in batch mode yet: use sync mode",
        "output_conn_id": "writing to storage is not supported in batch mode yet: use sync mode",
        "part_size": "a batch's results come back as one file",
        "max_concurrency": "the platform runs a batch's requests",
        "on_item_error": "a batch reports failed lines with the batch operator's on_line_error",
        "max_failed_fraction": "a batch reports failed lines with the batch operator's on_line_error",
    },
    "embedding": {
        "for_each": "an embedding batch embeds the texts of `input`: give them as a list instead",
        "output": "writing to storage is not supported in batch mode yet: use sync mode",
        "batch_size": "the platform splits a batch itself",
        "max_concurrency": "the platform runs a batch's requests",
        "requests_per_minute": "batch jobs are outside the per-minute rate limit",
    },
}


def batch_mode_problems(step_id: str, step: dict[str, Any]) -> Iterator[Problem]:
    base = ("steps", step_id)
    kind = step.get("type")
    if step.get("mode") != "batch":
        if "completion_window" in step:
            yield (
                (*base, "completion_window"),
                f"step '{step_id}' sets completion_window but is not in batch mode",
                "add mode: batch, or remove completion_window",
                True,
            )
        return
    if kind == "chat" and "for_each" not in step and "input_file" not in step:
        yield (
            (*base, "mode"),
            f"chat step '{step_id}' has mode: batch but no for_each",
            "a batch runs many requests as one job: add for_each (or input_file) to send one request per item",
            False,
        )
    for key, reason in _NOT_IN_BATCH.get(kind if isinstance(kind, str) else "", {}).items():
        if key in step:
            yield ((*base, key), f"'{key}' does not apply to step '{step_id}' in mode: batch", reason, True)

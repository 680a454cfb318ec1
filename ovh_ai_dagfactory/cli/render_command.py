"""`ovh-ai-dagfactory render FILE [--format text|mermaid]`: the DAG a pipeline becomes, without Airflow.

Prints the tasks, the operator each becomes, the exact arguments the builder passes (templates as
written, not rendered) and the edges. Exit 0, or 1 with FILE:LINE:COL errors for a bad pipeline,
or 3 for an internal error of ovh-ai-dagfactory (reported, never a traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta
from typing import Any, TextIO

from ovh_ai_dagfactory.factory.mapping import (
    batch_arguments,
    dag_arguments,
    operator_name,
    runs_in_task,
    step_arguments,
)
from ovh_ai_dagfactory.spec.declare import plain_value
from ovh_ai_dagfactory.spec.errors import PipelineInvalid
from ovh_ai_dagfactory.spec.fan_out import items_task_id, needs_items_task
from ovh_ai_dagfactory.spec.model import Pipeline

EXIT_OK, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 3
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "render",
        help="show the DAG a pipeline becomes: tasks, operators, parameters, edges",
        description="Show the Airflow DAG a pipeline file becomes (no Airflow needed).",
    )
    parser.add_argument("file", metavar="FILE", help="a pipeline file (.yaml/.yml)")
    parser.add_argument(
        "--format", choices=("text", "mermaid"), default="text", help="text (default) or a Mermaid flowchart"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        pipeline = parse_or_report(args.file)
    except InternalErrorReported:
        return EXIT_INTERNAL
    if pipeline is None:
        return EXIT_INVALID
    try:
        (render_mermaid if args.format == "mermaid" else render_text)(pipeline, sys.stdout)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: said plainly, not a traceback
        from ovh_ai_dagfactory.spec.parse import internal_error

        log.debug("render failed", exc_info=True)
        print(internal_error(args.file, exc, "rendering this pipeline").format(), file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


class InternalErrorReported(Exception):
    """A file met an internal error of ours (already printed): the command exits with 3."""


def parse_or_report(path: str) -> Pipeline | None:
    """The pipeline, or None after printing its errors (one `FILE:LINE:COL: error:` line each)."""
    from ovh_ai_dagfactory.spec.parse import parse_pipeline_file

    try:
        return parse_pipeline_file(path)
    except PipelineInvalid as invalid:
        for error in invalid.errors:
            print(error.format(), file=sys.stderr)
        count = len(invalid.errors)
        print(f"{path}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        if any(error.internal for error in invalid.errors):
            raise InternalErrorReported(path) from None
        return None


def render_text(pipeline: Pipeline, out: TextIO) -> None:
    arguments = dag_arguments(pipeline, pipeline.source_file)
    out.write(f"DAG {pipeline.dag_id}  ({pipeline.source_file})\n")
    for name, value in arguments.items():
        if name not in ("dag_id", "doc_md") and value not in (None, [], {}):
            out.write(f"  {name}: {_value(value)}\n")
    out.write("\nTasks\n")
    for step in pipeline.steps:
        upstream = pipeline.upstream_of(step.step_id)
        out.write(
            f"  {step.step_id}: {operator_name(step)}" + (f"  (after {', '.join(upstream)})" if upstream else "") + "\n"
        )
        if step.for_each is not None and step.mode == "batch":
            out.write(f"    for_each: {_value(plain_value(step.for_each))}  (one batch job: one request per item)\n")
        elif runs_in_task(step):
            source = "the lines of input_file" if step.input_file is not None else "the items (items below)"
            out.write(f"    one task over {source}: one request per item, messages rendered per item\n")
        elif step.for_each is not None:
            how = (
                f"the list comes from task {items_task_id(step.step_id)}"
                if needs_items_task(step.for_each)
                else "expanded over this literal list"
            )
            out.write(f"    for_each: {_value(plain_value(step.for_each))}  (mapped task, one per item; {how})\n")
        arguments = batch_arguments(step, pipeline) if step.mode == "batch" else step_arguments(step, pipeline)
        for name, value in arguments.items():
            if name == "task_id":
                continue
            if name == "messages":
                out.write("    messages:\n")
                for message in value:
                    out.write(f"      - {message['role']}: {_one_line(message['content'])}\n")
            else:
                out.write(f"    {name}: {_value(value)}\n")
    edges = [(up, step.step_id) for step in pipeline.steps for up in pipeline.upstream_of(step.step_id)]
    out.write("\nEdges\n")
    out.writelines(f"  {up} >> {down}\n" for up, down in edges)
    if not edges:
        out.write("  (none: every task runs on its own)\n")


def render_mermaid(pipeline: Pipeline, out: TextIO) -> None:
    out.write("flowchart LR\n")
    for step in pipeline.steps:
        label = f"{step.step_id}<br/>{step.kind} · {step.model}" + (" · for each item" if step.for_each else "")
        out.write(f'  {_node(step.step_id)}["{_mermaid_text(label)}"]\n')
    for step in pipeline.steps:
        for upstream in pipeline.upstream_of(step.step_id):
            out.write(f"  {_node(upstream)} --> {_node(step.step_id)}\n")


def _node(step_id: str) -> str:
    # Mermaid ids: letters, digits, underscores; step ids may also hold '.' and '-'.
    return "step_" + "".join(char if char.isalnum() or char == "_" else "_" for char in step_id)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", " ")


def _value(value: Any) -> str:
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={_value(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str):
        return _one_line(value)
    return repr(value)


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 120 else flat[:117] + "..."

"""Pipeline spec → the arguments of Airflow's DAG and of our operators, with no Airflow import.

Derived from the field declarations (spec/model.py): each declared field says which argument it
becomes (its own name, another name, a key of the operator's request-parameters dict, or none).
The builder passes exactly these to Airflow; `render` prints them, so what a user reads is what the
DAG gets. The spec already merged `defaults` into each step and turned durations into timedeltas.
"""

from __future__ import annotations

import os
from typing import Any

from ovh_ai_dagfactory.provider_info import DEFAULT_CONN_ID
from ovh_ai_dagfactory.spec.declare import REQUEST, SAME, declared_fields, plain_value
from ovh_ai_dagfactory.spec.model import ChatStep, Pipeline, Step

#: The provider operator each step kind becomes (the builder uses thin subclasses of these).
OPERATOR_NAMES = {
    "chat": "OVHCloudAIEndpointsChatCompletionsOperator",
    "embedding": "OVHCloudAIEndpointsEmbeddingOperator",
    "batch": "OVHCloudAIEndpointsBatchOperator",  # any kind, with `mode: batch`
    "chat_job": "OVHCloudAIEndpointsChatJobOperator",  # a chat step over many items in one task
}
#: DAG arguments passed even when unset: Airflow 2.11's default schedule is daily, not manual.
_ALWAYS = ("schedule",)


def connection_id(step: Step, pipeline: Pipeline) -> str | None:
    """The connection rule: the step's `connection`, else the pipeline's, else None (the operator's
    own default, `effective_connection_id`)."""
    return step.options.connection or pipeline.connection


def effective_connection_id(step: Step, pipeline: Pipeline) -> str:
    """The Airflow connection a step's task will use."""
    return connection_id(step, pipeline) or DEFAULT_CONN_ID


def _declared_arguments(spec_object: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(arguments, request parameters) of the declared fields of `spec_object` that are set."""
    arguments: dict[str, Any] = {}
    request: dict[str, Any] = {}
    for group, name, key, to_request, always in _argument_plan(type(spec_object)):
        value = getattr(getattr(spec_object, group) if group else spec_object, name)
        if value is None and not always:
            continue
        if type(value) not in _PLAIN:  # tuples, declared objects: as plain data
            value = plain_value(value)
        (request if to_request else arguments)[key] = value
    return arguments, request


def _argument_plan(cls: type) -> tuple[tuple[str | None, str, str, bool, bool], ...]:
    """(group, field, argument or request key, is a request parameter, passed even when None) for
    each declared field of `cls` that becomes an argument; read from the declarations once per
    class, since every step of every pipeline is mapped on each DAG-folder parse."""
    plan = _ARGUMENT_PLANS.get(cls)
    if plan is None:
        plan = _ARGUMENT_PLANS[cls] = tuple(
            (
                item.group,
                item.name,
                item.name if item.declared.argument in (SAME, REQUEST) else item.declared.argument,
                item.declared.argument == REQUEST,
                item.name in _ALWAYS,
            )
            for item in declared_fields(cls)
            if item.declared.argument is not None
        )
    return plan


_ARGUMENT_PLANS: dict[type, tuple[tuple[str | None, str, str, bool, bool], ...]] = {}
_PLAIN = (str, int, float, bool)


def dag_arguments(
    pipeline: Pipeline, source_label: str, upstream: dict[str, tuple[str, ...]] | None = None
) -> dict[str, Any]:
    arguments, _ = _declared_arguments(pipeline)
    if not arguments.get("params"):
        arguments.pop("params", None)
    arguments["doc_md"] = doc_md(pipeline, source_label, upstream)
    return arguments


def step_arguments(step: Step, pipeline: Pipeline) -> dict[str, Any]:
    """The operator's keyword arguments; only what the pipeline set, so operator defaults apply."""
    arguments, request = _declared_arguments(step)
    arguments = {"task_id": step.step_id, **arguments}
    if request:
        arguments[type(step).REQUEST_ARGUMENT] = request
    connection = connection_id(step, pipeline)
    if connection:
        arguments["ovh_conn_id"] = connection
    if isinstance(arguments.get("input_file"), str):
        arguments["input_file"] = file_uri(arguments["input_file"], pipeline.source_file)
    if runs_in_task(step) and step.for_each is not None:
        arguments["items"] = plain_value(step.for_each)  # the chat job operator's inline items
    return arguments


def file_uri(location: str, source_file: str) -> str:
    """`input_file` as the operator reads it: a URI (s3://..., file://...) or a template stays as
    written; a plain path is a local file, relative to the pipeline file (like an output_schema
    file), so data shipped next to the pipelines is found wherever the DAG folder is deployed."""
    if "://" in location or "{{" in location or "{%" in location:
        return location
    folder = os.path.dirname(os.path.abspath(source_file)) if source_file else os.getcwd()
    return "file://" + os.path.normpath(os.path.join(folder, location))


def operator_name(step: Step) -> str:
    """The provider operator a step becomes."""
    return OPERATOR_NAMES["batch" if step.mode == "batch" else step_kind(step)]


def step_kind(step: Step) -> str:
    """What `steps.<id>` reads a step as (spec.references.OUTPUTS_BY_KIND): its kind, or "chat_job"
    for a chat step whose items all run in one task."""
    return "chat_job" if runs_in_task(step) else step.kind


def runs_in_task(step: Step) -> bool:
    return isinstance(step, ChatStep) and step.runs_in_task and step.mode != "batch"


def batch_arguments(step: Step, pipeline: Pipeline) -> dict[str, Any]:
    """A `mode: batch` step's arguments for the batch operator: the same fields, under its names
    (its request parameters are `request_kwargs`, an embedding step's texts its `inputs`)."""
    arguments = step_arguments(step, pipeline)
    request = arguments.pop(type(step).REQUEST_ARGUMENT, None)
    if request:
        arguments["request_kwargs"] = request
    if step.kind == "embedding" and "input" in arguments:
        arguments["inputs"] = arguments.pop("input")
    return {"kind": step.kind, **arguments}


def doc_md(pipeline: Pipeline, source_label: str, upstream: dict[str, tuple[str, ...]] | None = None) -> str:
    """Description, source file and a table of steps — only what the file says, never rendered
    values (a template such as `{{ var.value.x }}` is shown as written, not resolved)."""
    lines = []
    if pipeline.description:
        lines += [pipeline.description, ""]
    if pipeline.doc_md:
        lines += [pipeline.doc_md.rstrip("\n"), ""]
    lines += [
        f"Pipeline file: `{source_label}` (built by ovh-ai-dagfactory)",
        "",
        "| Step | Type | Model | Upstream |",
        "|---|---|---|---|",
    ]
    for step in pipeline.steps:
        names = upstream[step.step_id] if upstream else pipeline.upstream_of(step.step_id)
        after = ", ".join(f"`{name}`" for name in names) or "—"
        lines.append(f"| `{step.step_id}` | {step.kind} | `{_cell(step.model)}` | {after} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")

"""Pipeline spec → the arguments of Airflow's DAG and of our operators, with no Airflow import.

The builder passes exactly these to Airflow; `render` prints them, so what a user reads is what the
DAG gets. The spec already merged `defaults` into each step and turned durations into timedeltas;
this module only maps names. Connection precedence: the step's `connection`, else the pipeline's,
else the operator's own default (`ovh_ai_endpoints_default`).
"""

from __future__ import annotations

from typing import Any

from ovh_ai_dagfactory.spec.model import ChatStep, EmbeddingStep, Pipeline, Step

#: The provider operator each step kind becomes (the builder uses thin subclasses of these).
OPERATOR_NAMES = {
    "chat": "OVHCloudAIEndpointsChatCompletionsOperator",
    "embedding": "OVHCloudAIEndpointsEmbeddingOperator",
}


def dag_arguments(
    pipeline: Pipeline, source_label: str, upstream: dict[str, tuple[str, ...]] | None = None
) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "dag_id": pipeline.dag_id,
        "description": pipeline.description,
        "schedule": pipeline.schedule,
        "start_date": pipeline.start_date,
        "catchup": pipeline.catchup,
        "tags": list(pipeline.tags),
        "default_args": pipeline.default_args.to_airflow(),
        "doc_md": doc_md(pipeline, source_label, upstream),
    }
    if pipeline.end_date is not None:
        arguments["end_date"] = pipeline.end_date
    if pipeline.params:
        arguments["params"] = dict(pipeline.params)
    if pipeline.max_active_runs is not None:
        arguments["max_active_runs"] = pipeline.max_active_runs
    return arguments


def step_arguments(step: Step, pipeline: Pipeline) -> dict[str, Any]:
    """The operator's keyword arguments; only what the pipeline set, so operator defaults apply."""
    arguments: dict[str, Any] = {"task_id": step.step_id, "model": step.model}
    if isinstance(step, ChatStep):
        arguments["messages"] = [{"role": m.role, "content": m.content} for m in step.messages]
        for name in ("temperature", "max_tokens", "top_p"):
            value = getattr(step, name)
            if value is not None:
                arguments[name] = value
        if step.stop is not None:
            arguments["stop"] = step.stop if isinstance(step.stop, str) else list(step.stop)
    elif isinstance(step, EmbeddingStep):
        arguments["input"] = step.input if isinstance(step.input, str) else list(step.input)
    connection = step.options.connection or pipeline.connection
    if connection:
        arguments["ovh_conn_id"] = connection
    for name in ("retries", "retry_delay", "execution_timeout"):
        value = getattr(step.options, name)
        if value is not None:
            arguments[name] = value
    if step.description:
        arguments["doc_md"] = step.description
    return arguments


def doc_md(pipeline: Pipeline, source_label: str, upstream: dict[str, tuple[str, ...]] | None = None) -> str:
    """Description, source file and a table of steps — only what the file says, never rendered
    values (a template such as `{{ var.value.x }}` is shown as written, not resolved)."""
    lines = []
    if pipeline.description:
        lines += [pipeline.description, ""]
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

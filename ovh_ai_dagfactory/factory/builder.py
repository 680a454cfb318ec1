"""Pipeline spec → Airflow DAG: one operator per step, the pipeline's DAG arguments, its edges.

What each argument is comes from `mapping` (shared with `render`); this module only constructs,
and — for the loader — runs the checks Airflow's DagBag runs on every DAG it finds, so that what
Airflow would refuse is reported against the pipeline file, at the key it comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from ovh_ai_dagfactory.compat import (
    DAG,
    Asset,
    Param,
    airflow_dag_checks,
    airflow_task_checks,
    is_airflow_refusal,
    is_policy_skip,
)
from ovh_ai_dagfactory.factory.mapping import batch_arguments, dag_arguments, step_arguments, step_kind
from ovh_ai_dagfactory.spec.declare import plain_value
from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.fan_out import items_task_id, needs_items_task
from ovh_ai_dagfactory.spec.model import Pipeline, Position, Step, templated_strings
from ovh_ai_dagfactory.spec.params import PARAM_ARGUMENTS, typed_param
from ovh_ai_dagfactory.spec.references import referenced_steps

#: When Airflow refuses the DAG's arguments, each is left out in turn, in this order, to find the
#: one it refuses: the first whose absence makes Airflow accept the DAG is reported. Arguments that
#: only matter together (catchup without start_date) are blamed on the first of them listed here.
_BLAME_ORDER = (
    "params",
    "tags",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "dagrun_timeout",
    "owner_links",
    "end_date",
    "start_date",
    "schedule",
    "default_args",
    "description",
    "doc_md",
)
#: The pipeline key each DAG argument comes from, where they differ.
_KEY_OF_ARGUMENT = {"doc_md": "description"}


class SkippedByPolicy(Exception):
    """A cluster policy asked Airflow to skip this DAG (AirflowClusterPolicySkipDag): not an error."""


def build_dag(pipeline: Pipeline, *, fileloc: str | None = None, source_label: str | None = None) -> Any:
    """The DAG for `pipeline`.

    `fileloc` is the Python file Airflow should re-parse to find this DAG again (the loader file);
    `source_label` is how doc_md names the pipeline file (a relative path reads best).
    """
    return _construct(pipeline, fileloc, source_label, building=[])


def build_checked_dag(pipeline: Pipeline, *, fileloc: str | None = None, source_label: str | None = None) -> Any:
    """`build_dag`, then the checks Airflow's DagBag runs before keeping a DAG.

    What Airflow refuses raises PipelineInvalid, positioned at the key the refused value comes from
    (a cron Airflow cannot read at `schedule:`, a task option at its step); a cluster policy's skip
    raises SkippedByPolicy; anything else is a bug of ours and propagates as it is.
    """
    building: list[Step] = []
    try:
        dag = _construct(pipeline, fileloc, source_label, building)
    except Exception as exc:
        step = building[0] if building else None
        where = partial(_step_error, pipeline, step, exc) if step else partial(_dag_error, pipeline, exc)
        _reraise_as_refusal(exc, where)
    try:
        airflow_dag_checks(dag)
    except Exception as exc:
        _reraise_as_refusal(exc, partial(_dag_error, pipeline, exc, checks=True))
    for step in pipeline.steps:
        try:
            airflow_task_checks(dag.task_dict[step.step_id])
        except Exception as exc:
            _reraise_as_refusal(exc, partial(_step_error, pipeline, step, exc))
    return dag


def _construct(pipeline: Pipeline, fileloc: str | None, source_label: str | None, building: list[Step]) -> Any:
    """The DAG; `building` holds the step whose task is being constructed, so that an error raised
    there can be reported at that step."""
    from ovh_ai_dagfactory.factory.step_operators import OPERATOR_BY_KIND, ForEachItemsOperator

    upstream = {step.step_id: pipeline.upstream_of(step.step_id) for step in pipeline.steps}
    arguments = _with_params(dag_arguments(pipeline, source_label or pipeline.source_file, upstream))
    dag = DAG(**_with_assets(arguments, "schedule"))
    if fileloc is not None:
        dag.fileloc = fileloc
    kinds = {step.step_id: step_kind(step) for step in pipeline.steps}
    # Steps whose results later steps read per item (a for_each step, mapped or batch; a batch chat
    # step over a file), not a chat job (its items run in its one task).
    mapped = tuple(step.step_id for step in pipeline.steps if answers_per_item(step, kinds[step.step_id]))
    shared: dict[str, Any] = {"dag": dag, "step_kinds": kinds, **({"mapped_steps": mapped} if mapped else {})}
    tasks: dict[str, Any] = {}
    edges: dict[str, tuple[str, ...]] = {}  # task id → upstream task ids not implied by an expansion
    for step in pipeline.steps:
        building[:] = [step]
        arguments = {**shared, **_with_assets(step_arguments(step, pipeline), "outlets")}
        operator = OPERATOR_BY_KIND[kinds[step.step_id]]
        in_task = kinds[step.step_id] == "chat_job"  # no items task: it waits for what for_each reads itself
        edges[step.step_id] = upstream[step.step_id] if in_task else _task_upstream(step, upstream[step.step_id])
        if step.mode == "batch":  # one task for the whole step: the platform runs its requests
            from ovh_ai_dagfactory.factory.batch_step import PipelineBatchOperator

            batch = {**shared, **_with_assets(batch_arguments(step, pipeline), "outlets")}
            if step.for_each is not None:
                batch["for_each"] = plain_value(step.for_each)
            edges[step.step_id] = upstream[step.step_id]
            tasks[step.step_id] = PipelineBatchOperator(**_after_fan_out(batch, edges[step.step_id], mapped))
        elif step.for_each is None or in_task:  # one task (a chat job runs its items inside)
            tasks[step.step_id] = operator(**_after_fan_out(arguments, edges[step.step_id], mapped))
        elif not needs_items_task(step.for_each):
            tasks[step.step_id] = operator.partial(**_after_fan_out(arguments, edges[step.step_id], mapped)).expand(
                item=plain_value(step.for_each)
            )
        else:
            items_id = items_task_id(step.step_id)
            edges[items_id] = _for_each_upstream(step)
            items = ForEachItemsOperator(
                **_after_fan_out(
                    {**shared, "task_id": items_id, "for_each": plain_value(step.for_each), "step_id": step.step_id},
                    edges[items_id],
                    mapped,
                )
            )
            tasks[items_id] = items
            task_arguments = _after_fan_out(arguments, edges[step.step_id], mapped)
            tasks[step.step_id] = operator.partial(**task_arguments).expand(item=items.output)
    building.clear()
    for task_id, upstream_ids in edges.items():
        for upstream_id in upstream_ids:
            tasks[task_id].set_upstream(tasks[upstream_id])
    return dag


def answers_per_item(step: Step, kind: str) -> bool:
    """`spec.references.answers_per_item`, for a spec object."""
    batch_file = step.kind == "chat" and step.mode == "batch" and getattr(step, "input_file", None) is not None
    return kind != "chat_job" and (step.for_each is not None or batch_file)


def _task_upstream(step: Step, upstream: tuple[str, ...]) -> tuple[str, ...]:
    """The steps a step's own task waits for: a step read only by its for_each template is waited for
    by the task computing the items, which the step's task waits for through its expansion."""
    if step.for_each is None or not needs_items_task(step.for_each):
        return upstream
    for_each_texts = {id(text) for text in _for_each_texts(step)}
    own = set(step.depends_on)
    own.update(
        ref for text in templated_strings(step) if id(text) not in for_each_texts for ref in referenced_steps(text)
    )
    # Waited for anyway, through the items task; a direct edge would only clutter the graph.
    for_each_only = set(_for_each_upstream(step)) - own
    return tuple(step_id for step_id in upstream if step_id not in for_each_only)


def _for_each_texts(step: Step) -> list[str]:
    if isinstance(step.for_each, str):
        return [step.for_each]
    return [text for text in step.for_each or () if isinstance(text, str)]


def _for_each_upstream(step: Step) -> tuple[str, ...]:
    refs = (ref for text in _for_each_texts(step) for ref in referenced_steps(text))
    return tuple(dict.fromkeys(ref for ref in refs if ref != step.step_id))


def _after_fan_out(arguments: dict[str, Any], upstream: tuple[str, ...], mapped: tuple[str, ...]) -> dict[str, Any]:
    """A task reading a for_each step runs even when that step ran for no item (Airflow skips a task
    mapped over an empty list, and `all_success` would skip everything after it): it then reads [].
    A trigger_rule the step sets itself wins."""
    if "trigger_rule" not in arguments and any(step_id in mapped for step_id in upstream):
        return {**arguments, "trigger_rule": "none_failed"}
    return arguments


def _with_assets(arguments: dict[str, Any], name: str) -> dict[str, Any]:
    """Asset URIs (a list `schedule`, a step's `outlets`) become Airflow Assets (Datasets on 2.11)."""
    if isinstance(arguments.get(name), list):
        arguments[name] = [Asset(uri) for uri in arguments[name]]
    return arguments


def _with_params(arguments: dict[str, Any]) -> dict[str, Any]:
    """Typed params (the spec's rule, `typed_param`) become Airflow Params; plain defaults stay."""
    params = arguments.get("params")
    if params:
        arguments["params"] = {name: _param(value) for name, value in params.items()}
    return arguments


def _param(value: Any) -> Any:
    spec = typed_param(value)
    if spec is None:
        return value
    keywords = {key: item for key, item in spec.items() if key not in PARAM_ARGUMENTS}
    if "default" in spec:
        return Param(spec["default"], description=spec.get("description"), **keywords)
    return Param(description=spec.get("description"), **keywords)


def _reraise_as_refusal(exc: Exception, error: Callable[[], PipelineError]) -> NoReturn:
    """Airflow's refusal → PipelineInvalid with `error()`; a policy's skip → SkippedByPolicy;
    anything else unchanged (a bug of ours: the loader reports it as such). `error` is called only
    for a refusal: finding the refused argument rebuilds the DAG, which only a refusal may pay for."""
    if is_policy_skip(exc):
        raise SkippedByPolicy(str(exc)) from exc
    if not is_airflow_refusal(exc):
        raise exc
    raise PipelineInvalid([error()]) from exc


def _dag_error(pipeline: Pipeline, exc: Exception, checks: bool = False) -> PipelineError:
    argument = _refused_argument(pipeline, checks)
    if argument is None:
        where, what = Position(1, 1), "this pipeline"
    elif argument == "dag_id":
        where, what = pipeline.dag_id_position, "the dag_id"
    else:
        key = _KEY_OF_ARGUMENT.get(argument, argument)
        where, what = pipeline.position_of(key), f"`{key}`"
    return PipelineError(
        pipeline.source_file, where.line, where.column, f"Airflow refuses {what}: {_reason(exc)}", _hint(exc)
    )


def _step_error(pipeline: Pipeline, step: Step, exc: Exception) -> PipelineError:
    return PipelineError(
        pipeline.source_file,
        step.position.line,
        step.position.column,
        f"Airflow refuses step '{step.step_id}': {_reason(exc)}",
        _hint(exc),
    )


def _refused_argument(pipeline: Pipeline, checks: bool) -> str | None:
    """Which DAG argument Airflow refuses: the first whose absence makes a bare DAG (no tasks)
    pass construction (and, for errors found by the checks, `dag.validate()`). Runs only after a
    refusal, so its cost does not count."""
    arguments = _with_params(dag_arguments(pipeline, pipeline.source_file))
    try:
        arguments = _with_assets(arguments, "schedule")
    except Exception:  # noqa: BLE001 - an asset URI Airflow refuses: the schedule is the refused argument
        return "schedule"

    def accepted(candidate: dict[str, Any]) -> bool:
        try:
            dag = DAG(**candidate)
            if checks:
                dag.validate()
        except Exception:  # noqa: BLE001 - any refusal: this is a search, the real error is reported
            return False
        return True

    if not accepted({"dag_id": pipeline.dag_id, "schedule": None}):
        return "dag_id"
    if accepted(arguments):
        return None  # the DAG alone is fine: the tasks or their edges are refused
    for name in _BLAME_ORDER:
        if name in arguments and accepted({key: value for key, value in arguments.items() if key != name}):
            return name
    return None


def _reason(exc: BaseException) -> str:
    text = f"{exc} ({type(exc).__name__})"
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in str(exc):
        text += f": {cause}"  # e.g. the param that a "not allowed to define a Schedule" error is about
    return text


def _hint(exc: BaseException) -> str | None:
    if type(exc).__name__.startswith("AirflowClusterPolicy"):
        return "this Airflow installation's cluster policy refuses it; ask its administrators what it requires"
    return None

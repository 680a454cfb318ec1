"""Checks a JSON Schema cannot express: the steps as a graph, templates, ids, dates.

They run on the plain data whether or not the schema passed (so one run reports every problem),
hence every access is guarded: a value of the wrong shape is the schema's to report, not ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ovh_ai_dagfactory.spec.assets import asset_problems
from ovh_ai_dagfactory.spec.batch_mode import batch_mode_problems
from ovh_ai_dagfactory.spec.chat_job_rules import chat_job_problems
from ovh_ai_dagfactory.spec.cron import PRESET_NAMES, schedule_problem
from ovh_ai_dagfactory.spec.dates import parse_date
from ovh_ai_dagfactory.spec.declare import AFTER_DEFAULTS, declared_fields, templated_values
from ovh_ai_dagfactory.spec.durations import DurationTooLong, parse_duration
from ovh_ai_dagfactory.spec.embedding_rules import embedding_input_problems
from ovh_ai_dagfactory.spec.errors import PipelineError
from ovh_ai_dagfactory.spec.fan_out import fan_out_problems
from ovh_ai_dagfactory.spec.graph import cycles
from ovh_ai_dagfactory.spec.model import STEP_CLASSES, DefaultArgs
from ovh_ai_dagfactory.spec.output_schema import (
    OutputSchemaUnreadable,
    load_output_schema,
    output_schema_problems,
    unknown_json_name,
)
from ovh_ai_dagfactory.spec.params import param_problems, typed_param
from ovh_ai_dagfactory.spec.references import (
    OUTPUT_NEEDS,
    answers_per_item,
    mapped_counterpart,
    outputs_of,
    step_kind,
    step_references,
)
from ovh_ai_dagfactory.spec.shapes import AIRFLOW_ID_MAX, AIRFLOW_ID_PATTERN, DURATION
from ovh_ai_dagfactory.spec.suggest import did_you_mean
from ovh_ai_dagfactory.spec.yaml_loader import Path, PositionIndex

#: Airflow's KEY_REGEX (dag ids, task ids), and its length limit.
AIRFLOW_ID = re.compile(AIRFLOW_ID_PATTERN)
_JINJA_MARKERS = ("{{", "{%", "{#")


def default_dag_id(source_file: str) -> str:
    """The file name without its directory and its .yaml/.yml extension."""
    name = re.split(r"[\\/]", source_file)[-1]
    return re.sub(r"\.ya?ml$", "", name, flags=re.IGNORECASE)


def step_class(step: dict[str, Any]) -> type | None:
    """The spec class of a step's plain data, None when its `type` is not a known kind."""
    kind = step.get("type")
    return STEP_CLASSES.get(kind) if isinstance(kind, str) else None


class PipelineChecks:
    """Runs every semantic check over one document; `errors()` yields them."""

    def __init__(self, data: dict[str, Any], positions: PositionIndex, source_file: str) -> None:
        self.data = data
        self.positions = positions
        self.file = source_file
        steps = data.get("steps")
        self.steps: dict[str, dict[str, Any]] = (
            {sid: step for sid, step in steps.items() if isinstance(step, dict)} if isinstance(steps, dict) else {}
        )
        self.kinds = {sid: step_kind(step) for sid, step in self.steps.items()}
        # Steps whose outputs are read per item (a chat job's items run in its one task: not these).
        self.mapped = {sid for sid, step in self.steps.items() if answers_per_item(step)}
        defaults = data.get("defaults")
        self.defaults = defaults if isinstance(defaults, dict) else {}
        self._output_schemas: dict[str, Any] = {}  # step id → its loaded output_schema (None: unreadable)

    def errors(self) -> list[PipelineError]:
        found = [*self._dag_id(), *self._dates(), *self._schedule(), *self._durations(), *self._params()]
        found += [
            self._error(path, message, hint, key=key)
            for path, message, hint, key in asset_problems(self.data, self.steps)
        ]
        edges: dict[str, list[str]] = {sid: [] for sid in self.steps}
        for step_id, step in self.steps.items():
            found.extend(self._required_after_defaults(step_id, step))
            found.extend(self._depends_on(step_id, step, edges[step_id]))
            found.extend(self._templates(step_id, step, edges[step_id]))
            found.extend(self._output_schema(step_id, step))
            cls = step_class(step)
            if cls is not None:
                problems = [
                    *fan_out_problems(step_id, step, cls, self.steps),
                    *embedding_input_problems(step_id, step),
                    *chat_job_problems(step_id, step),
                    *batch_mode_problems(step_id, step),
                ]
                found.extend(self._error(path, message, hint, key=key) for path, message, hint, key in problems)
        for kind, values in self.defaults.items():
            if kind in STEP_CLASSES:
                for path, text in templated_values(STEP_CLASSES[kind], values, ("defaults", kind)):
                    found.extend(self._template(text, path, None, []))
        found.extend(self._cycles(edges))
        return found

    # -- where -------------------------------------------------------------------------------
    def _error(self, path: Path, message: str, hint: str | None = None, *, key: bool = False) -> PipelineError:
        line, column = self.positions.key(path) if key else self.positions.value(path)
        return PipelineError(self.file, line, column, message, hint)

    # -- pipeline ----------------------------------------------------------------------------
    def _dag_id(self) -> Iterator[PipelineError]:
        if "dag_id" in self.data:
            return  # the schema checks an explicit one
        implied = default_dag_id(self.file)
        if not AIRFLOW_ID.match(implied) or len(implied) > AIRFLOW_ID_MAX:
            yield PipelineError(
                self.file,
                1,
                1,
                f"the file name gives the DAG id '{implied}', which Airflow does not accept",
                "set 'dag_id' (letters, digits, '_', '.', '-') or rename the file",
            )

    def _dates(self) -> Iterator[PipelineError]:
        parsed = {}
        for name in ("start_date", "end_date"):
            value = self.data.get(name)
            if isinstance(value, str):
                try:
                    parsed[name] = parse_date(value)
                except ValueError as exc:
                    yield self._error(
                        (name,),
                        f"'{name}' is not a real date: {exc}",
                        "write a date (2024-01-01) or a date-time (2024-01-01T06:00:00Z)",
                    )
        if len(parsed) == 2 and parsed["end_date"] < parsed["start_date"]:
            yield self._error(("end_date",), "'end_date' is before 'start_date'")

    def _schedule(self) -> Iterator[PipelineError]:
        schedule = self.data.get("schedule")
        if isinstance(schedule, list) and schedule:  # assets: 2.11 wants a start_date for them too
            yield from self._start_date("assets")
        if not isinstance(schedule, str):
            return  # null is manual; other types are the schema's to report
        problem = schedule_problem(schedule)
        if problem is None:
            yield from self._start_date(schedule)
            yield from self._continuous(schedule)
            return
        if schedule.strip().startswith("@"):
            hint = did_you_mean(schedule.strip(), PRESET_NAMES) or f"presets: {', '.join(PRESET_NAMES)}"
            yield self._error(("schedule",), f"'schedule' is not a preset Airflow knows: '{schedule}'", hint)
            return
        hint = (
            "a cron expression has 5 fields: minute (0-59) hour (0-23) day-of-month (1-31) "
            "month (1-12) day-of-week (0-6), e.g. '0 6 * * 1-5'; or a preset such as '@daily'"
        )
        yield self._error(("schedule",), f"'schedule' is not a cron expression Airflow accepts: {problem}", hint)

    def _start_date(self, schedule: str) -> Iterator[PipelineError]:
        # Airflow 2.11 refuses a schedule without a start date, and Airflow 3 one that catches up from
        # none; one rule for both lines.
        if schedule and "start_date" not in self.data:
            yield self._error(
                ("schedule",),
                "a scheduled pipeline needs a 'start_date': the first date its schedule counts from",
                "add 'start_date' (e.g. 2024-01-01), or set 'schedule: null' for manual runs only",
            )

    def _continuous(self, schedule: str) -> Iterator[PipelineError]:
        """Airflow refuses a continuous DAG that may run twice at once (its default allows 16)."""
        runs = self.data.get("max_active_runs")
        if schedule != "@continuous" or runs == 1:
            return
        if "max_active_runs" not in self.data:
            yield self._error(
                ("schedule",),
                "'@continuous' starts each DAG run when the last one ends: Airflow "
                "refuses it without max_active_runs: 1",
                "add 'max_active_runs: 1'",
            )
        elif isinstance(runs, int) and not isinstance(runs, bool):
            yield self._error(
                ("max_active_runs",),
                f"'max_active_runs' must be 1 with schedule '@continuous', got {runs}",
                "set 'max_active_runs: 1'",
            )

    def _params(self) -> Iterator[PipelineError]:
        """Typed params as Airflow checks them: a valid schema, a default that matches it, and a
        default at all when the pipeline is scheduled."""
        params = self.data.get("params")
        if not isinstance(params, dict):
            return
        scheduled = bool(self.data.get("schedule"))
        for name, value in params.items():
            spec = typed_param(value)
            if spec is None:
                continue
            for inner, message, hint in param_problems(name, spec, scheduled):
                yield self._error(("params", name, *inner), message, hint, key=not inner)

    def _durations(self) -> Iterator[PipelineError]:
        """Duration strings past MAX_DURATION (the schema checks their shape, not their size)."""
        owners: list[tuple[Path, Any, type | None]] = [(("default_args",), self.data.get("default_args"), DefaultArgs)]
        owners += [(("defaults", kind), values, STEP_CLASSES.get(kind)) for kind, values in self.defaults.items()]
        owners += [(("steps", sid), step, step_class(step)) for sid, step in self.steps.items()]
        for path, values, cls in owners:
            if not isinstance(values, dict) or cls is None:
                continue
            for name in (item.name for item in declared_fields(cls) if item.declared.shape is DURATION):
                value = values.get(name)
                if not isinstance(value, str) or not value[:1].isdigit():
                    continue
                try:
                    parse_duration(value)
                except DurationTooLong as exc:
                    yield self._error(path + (name,), f"'{name}' is too long: {exc}")
                except ValueError:
                    pass  # not a duration at all: the schema's pattern reports it

    # -- steps -------------------------------------------------------------------------------
    def _required_after_defaults(self, step_id: str, step: dict[str, Any]) -> Iterator[PipelineError]:
        """Fields a step needs once `defaults.<kind>` is merged (its `model`)."""
        cls = step_class(step)
        if cls is None:
            return
        kind = step["type"]
        kind_defaults = self.defaults.get(kind)
        for item in declared_fields(cls):
            if item.declared.required != AFTER_DEFAULTS or item.name in step:
                continue
            if isinstance(kind_defaults, dict) and item.name in kind_defaults:
                continue
            yield self._error(
                ("steps", step_id),
                f"{kind} step '{step_id}' has no {item.name}",
                f"set '{item.name}' on the step, or once for all {kind} steps in defaults.{kind}.{item.name}",
                key=True,
            )

    def _depends_on(self, step_id: str, step: dict[str, Any], upstream: list[str]) -> Iterator[PipelineError]:
        depends_on = step.get("depends_on")
        if not isinstance(depends_on, list):
            return
        for index, other in enumerate(depends_on):
            if not isinstance(other, str):
                continue
            path = ("steps", step_id, "depends_on", index)
            if other == step_id:
                yield self._error(path, f"step '{step_id}' depends on itself")
            elif other not in self.steps:
                yield self._error(
                    path,
                    f"step '{step_id}' depends on unknown step '{other}'",
                    did_you_mean(other, self.steps) or _known(self.steps),
                )
            else:
                upstream.append(other)

    def _templates(self, step_id: str, step: dict[str, Any], upstream: list[str]) -> Iterator[PipelineError]:
        cls = step_class(step)
        if cls is None:
            return
        for path, text in templated_values(cls, step, ("steps", step_id)):
            yield from self._template(text, path, step_id, upstream)

    def _template(self, text: str, path: Path, step_id: str | None, upstream: list[str]) -> Iterator[PipelineError]:
        if not any(marker in text for marker in _JINJA_MARKERS):
            return
        from jinja2 import TemplateSyntaxError

        try:
            references = step_references(text)
        except TemplateSyntaxError as exc:
            line, column = self._text_position(path, exc.lineno or 1)
            yield PipelineError(
                self.file,
                line,
                column,
                f"Jinja syntax error: {exc.message}",
                "check the {{ ... }} and {% ... %} delimiters",
            )
            return
        except RecursionError:  # Jinja's parser recurses once per nesting level
            line, column = self._text_position(path, 1)
            yield PipelineError(
                self.file,
                line,
                column,
                "the template nests expressions or blocks too deeply for Jinja to parse",
                "split the template, or compute the value in fewer levels",
            )
            return
        for other, output, detail, lineno in references:
            if step_id is not None and other in self.steps and other != step_id:
                upstream.append(other)
                if self._output_ok(other, output):  # the common case: no position needed
                    unknown = self._unknown_json_name(other, output, detail)
                    if unknown is not None:
                        line, column = self._text_position(path, lineno)
                        yield PipelineError(self.file, line, column, *unknown)
                    continue
            line, column = self._text_position(path, lineno)
            where = f"step '{step_id}'" if step_id else f"'{'.'.join(map(str, path))}'"
            if step_id is None:
                yield PipelineError(
                    self.file,
                    line,
                    column,
                    f"{where} reads 'steps.{other}': defaults apply to many steps, "
                    "so they cannot name another step's output",
                )
            elif other == step_id:
                yield PipelineError(self.file, line, column, f"step '{step_id}' reads its own output 'steps.{other}'")
            elif other not in self.steps:
                yield PipelineError(
                    self.file,
                    line,
                    column,
                    f"{where} reads unknown step 'steps.{other}'",
                    did_you_mean(other, self.steps) or _known(self.steps),
                )
            else:
                yield from self._output(other, output, line, column, where)

    def _outputs(self, other: str) -> tuple[str, ...] | None:
        """What `steps.<other>` provides; None when the step's kind is unknown (reported elsewhere)."""
        kind = self.kinds.get(other)
        return outputs_of(kind, other in self.mapped) if isinstance(kind, str) else None

    def _output_ok(self, other: str, output: str | None) -> bool:
        outputs = self._outputs(other)
        needs = OUTPUT_NEEDS.get(output or "")
        return outputs is None or (output in outputs and (needs is None or needs in self.steps[other]))

    def _unknown_json_name(self, other: str, output: str | None, name: str | None) -> tuple[str, str] | None:
        if output != "json" or name is None:
            return None
        if other not in self._output_schemas:  # a schema file is read once per parse, not per reference
            try:
                self._output_schemas[other] = load_output_schema(self.steps[other].get("output_schema"), self.file)
            except OutputSchemaUnreadable:
                self._output_schemas[other] = None  # reported at the schema itself
        return unknown_json_name(self._output_schemas[other], other, name)

    def _output_schema(self, step_id: str, step: dict[str, Any]) -> Iterator[PipelineError]:
        for path, message, hint in output_schema_problems(step_id, step.get("output_schema"), self.file):
            yield self._error(path, message, hint)

    def _output(self, other: str, output: str | None, line: int, column: int, where: str) -> Iterator[PipelineError]:
        kind, outputs = self.kinds.get(other), self._outputs(other)
        if outputs is None:
            return
        plain = [name for name in outputs if name not in OUTPUT_NEEDS]
        names = ", ".join(f"steps.{other}.{name}" for name in plain)
        needs = OUTPUT_NEEDS.get(output or "")
        mapped = other in self.mapped or kind == "chat_job"  # a chat job's answers: contents, not content
        meant = mapped_counterpart(output, mapped) if output else None
        if output in outputs and needs is not None:
            yield PipelineError(
                self.file,
                line,
                column,
                f"step '{other}' has no {needs}, so {where} cannot read 'steps.{other}.{output}'",
                f"add '{needs}' to step '{other}', or read steps.{other}.{plain[0]}",
            )
        elif output is not None and meant in outputs:
            runs = "runs once per item (for_each)" if mapped else "runs once (it has no for_each)"
            shape = "a list in item order" if mapped else "one result"
            yield PipelineError(
                self.file,
                line,
                column,
                f"step '{other}' {runs}, so {where} cannot read 'steps.{other}.{output}'",
                f"read steps.{other}.{meant} ({shape})",
            )
        elif output is None:
            yield PipelineError(
                self.file,
                line,
                column,
                f"{where} reads 'steps.{other}' without naming an output",
                f"use one of {names}",
            )
        elif output not in outputs:
            close = did_you_mean(output, outputs)
            yield PipelineError(
                self.file,
                line,
                column,
                f"{kind} step '{other}' has no output '{output}' (read by {where})",
                close or f"use one of {names}",
            )

    def _text_position(self, path: Path, jinja_line: int) -> tuple[int, int]:
        """Where line `jinja_line` of a string value sits in the file."""
        node = self.positions.node(path)
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        style = getattr(node, "style", None)
        if style in ("|", ">"):  # block scalar: content starts on the line after the indicator
            line += jinja_line
            source = self.positions.line_text(line)
            return line, len(source) - len(source.lstrip(" ")) + 1
        if jinja_line > 1:
            return line + jinja_line - 1, 1
        return line, column

    # -- graph -------------------------------------------------------------------------------
    def _cycles(self, edges: dict[str, list[str]]) -> Iterator[PipelineError]:
        for cycle in cycles(edges):
            waits = list(reversed(cycle))  # edges point upstream; print a → b as "a before b"
            yield self._error(
                ("steps", cycle[0]),
                "steps depend on each other in a cycle: " + " → ".join(waits),
                "remove one of the depends_on entries or steps.<id> references in the cycle",
                key=True,
            )


def _known(steps: dict[str, Any]) -> str:
    names = list(steps)
    return "known steps: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")

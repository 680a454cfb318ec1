"""Typed pipeline objects: what a valid pipeline file means, with no Airflow and no openai.

The parser produces these; the builder consumes them directly. Values that Jinja renders at run
time (model, message contents, embedding input) stay strings here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Union

StepKind = Literal["chat", "embedding"]
MessageRole = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Position:
    """Where a node starts in its YAML file (1-based line and column)."""

    line: int
    column: int


@dataclass(frozen=True)
class Message:
    role: MessageRole
    content: str  # may hold Jinja


@dataclass(frozen=True)
class TaskOptions:
    """Airflow task arguments a step (or the connection/default_args) may set."""

    retries: int | None = None
    retry_delay: timedelta | None = None
    execution_timeout: timedelta | None = None
    connection: str | None = None  # Airflow connection id; None means the pipeline's, then the hook's default


@dataclass(frozen=True)
class ChatStep:
    step_id: str
    model: str  # may hold Jinja
    messages: tuple[Message, ...]
    temperature: float | None = None  # None: the operator's default (1.0)
    max_tokens: int | None = None
    top_p: float | None = None
    stop: str | tuple[str, ...] | None = None
    depends_on: tuple[str, ...] = ()
    options: TaskOptions = field(default_factory=TaskOptions)
    position: Position = Position(1, 1)
    kind: StepKind = "chat"
    description: str | None = None  # the task's doc in the Airflow UI

    def templated_strings(self) -> tuple[str, ...]:
        return (self.model, *(message.content for message in self.messages))


@dataclass(frozen=True)
class EmbeddingStep:
    step_id: str
    model: str  # may hold Jinja
    input: str | tuple[str, ...]  # may hold Jinja
    depends_on: tuple[str, ...] = ()
    options: TaskOptions = field(default_factory=TaskOptions)
    position: Position = Position(1, 1)
    kind: StepKind = "embedding"
    description: str | None = None  # the task's doc in the Airflow UI

    def templated_strings(self) -> tuple[str, ...]:
        inputs = (self.input,) if isinstance(self.input, str) else self.input
        return (self.model, *inputs)


Step = Union[ChatStep, EmbeddingStep]


@dataclass(frozen=True)
class DefaultArgs:
    """The pipeline's `default_args`: Airflow's own keys, durations already turned into timedeltas."""

    owner: str | None = None
    retries: int | None = None
    retry_delay: timedelta | None = None
    execution_timeout: timedelta | None = None
    email: tuple[str, ...] = ()
    email_on_failure: bool | None = None
    email_on_retry: bool | None = None
    depends_on_past: bool | None = None

    def to_airflow(self) -> dict[str, object]:
        """Only the keys the user set, in the shape Airflow's `default_args` expects."""
        values: dict[str, object] = {}
        for name in (
            "owner",
            "retries",
            "retry_delay",
            "execution_timeout",
            "email_on_failure",
            "email_on_retry",
            "depends_on_past",
        ):
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        if self.email:
            values["email"] = list(self.email)
        return values


@dataclass(frozen=True)
class Pipeline:
    """One pipeline file: one DAG of chat and embedding steps, defaults already merged into steps."""

    dag_id: str
    source_file: str
    steps: tuple[Step, ...]  # in file order
    description: str | None = None
    schedule: str | None = None  # cron or preset; None = manual only
    start_date: datetime | None = None
    end_date: datetime | None = None
    catchup: bool = False
    tags: tuple[str, ...] = ()
    default_args: DefaultArgs = field(default_factory=DefaultArgs)
    connection: str | None = None
    max_active_runs: int | None = None
    params: dict[str, object] = field(default_factory=dict)
    #: Where `dag_id:` is written; 1:1 when the dag_id comes from the file name. Errors about the
    #: dag_id (duplicates across files) point here without reading the file again.
    dag_id_position: Position = Position(1, 1)
    #: Where each top-level key (schedule, params, ...) is written, for errors found after parsing
    #: (Airflow refusing a value when the DAG is built). A key not written in the file is absent.
    field_positions: dict[str, Position] = field(default_factory=dict)

    def position_of(self, name: str) -> Position:
        """Where top-level key `name` is written; 1:1 when it is not in the file."""
        return self.field_positions.get(name, Position(1, 1))

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(step_id)

    def upstream_of(self, step_id: str) -> tuple[str, ...]:
        """Explicit `depends_on` plus the steps that templates reference as `steps.<id>`."""
        from ovh_ai_dagfactory.spec.references import referenced_steps

        step = self.step(step_id)
        implied = [ref for text in step.templated_strings() for ref in referenced_steps(text)]
        ordered: dict[str, None] = dict.fromkeys((*step.depends_on, *implied))
        ordered.pop(step_id, None)
        return tuple(ordered)

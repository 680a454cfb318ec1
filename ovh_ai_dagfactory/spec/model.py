"""Typed pipeline objects, and the one declaration of every field a pipeline file may hold.

Each attribute below that a user writes in YAML is declared where it is typed (`Declared(...)`, see
`declare`): the JSON Schema, the conversion from YAML, the operator and DAG arguments, the Jinja
checks and the docs tables are all derived from these declarations. To add a field, add one line
here (and use it where it has an effect). No Airflow, no openai.

Values that Jinja renders at run time (`templated=True`: model, message contents, embedding input)
stay strings here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Union

from ovh_ai_dagfactory.provider_info import (
    DEFAULT_EMBEDDING_BATCH_SIZE,
    DEFAULT_EMBEDDING_CONCURRENCY,
    DEFAULT_REQUESTS_PER_MINUTE,
)
from ovh_ai_dagfactory.spec.chat_job_fields import (
    CHAT_ID_FIELD,
    CHAT_MAX_CONCURRENCY,
    FOR_EACH_MODE,
    IN_TASK,
    MAX_FAILED_FRACTION,
    ON_ITEM_ERROR,
    PART_SIZE,
)
from ovh_ai_dagfactory.spec.declare import (
    BOOLEAN,
    NON_EMPTY_STRING,
    REQUEST,
    SAME,
    STRING,
    Declared,
    Shape,
    enum,
    integer,
    number,
    one_or_list,
    plain_value,
    template_fields,
)
from ovh_ai_dagfactory.spec.output_schema import load_output_schema
from ovh_ai_dagfactory.spec.shapes import CONNECTION_ID, DAG_ID, DATE, DURATION, PARAMS, RATE, SCHEDULE, TAGS
from ovh_ai_dagfactory.spec.shared_fields import (
    COMPLETION_WINDOW,
    DEPENDS_ON,
    EXECUTION_TIMEOUT,
    EXTRA_BODY,
    FOR_EACH_ITEMS,
    ID_FIELD,
    INPUT_CONN_ID,
    INPUT_FILE,
    MAX_PARALLEL,
    MODE,
    MODEL,
    OUTPUT,
    OUTPUT_CONN_ID,
    RETRIES,
    RETRY_DELAY,
    STEP_DESCRIPTION,
)
from ovh_ai_dagfactory.spec.task_options import OPTIONS, TaskOptions

StepKind = Literal["chat", "embedding"]
MessageRole = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Position:
    """Where a node starts in its YAML file (1-based line and column)."""

    line: int
    column: int


@dataclass(frozen=True)
class Message:
    role: MessageRole = Declared(
        enum("system", "user", "assistant"),
        "Who speaks: system sets behaviour and context, user asks, assistant holds earlier model answers "
        "(conversation history).",
        ("system", "user", "assistant"),
        required=True,
    ).field("user")
    content: str = Declared(
        STRING,
        "The message text; may be a Jinja template ({{ ds }}, {{ steps.<id>.content }}, ...).",
        ("You are a data analyst.", "Generate a report summary for {{ ds }}"),
        templated=True,
        required=True,
    ).field("")

    DESCRIPTION: ClassVar[str] = "One chat message."
    EXAMPLE: ClassVar[dict[str, Any]] = {"role": "user", "content": "Generate a report summary for {{ ds }}"}


MESSAGES = Shape({"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/message"}}, "list of messages")


@dataclass(frozen=True)
class ChatStep:
    step_id: str = ""
    model: str = MODEL.field("")
    messages: tuple[Message, ...] = Declared(
        MESSAGES,
        "The conversation sent to the model, in order (at least one message).",
        (
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Explain machine learning in simple terms."},
            ],
        ),
        required=True,
        in_defaults=False,
        nested=Message,
    ).field(())
    temperature: float | None = Declared(
        number(0, 2),
        "Sampling temperature between 0 and 2: low values give focused, deterministic answers; high values "
        "more varied ones.",
        (0.3, 0.7),
        default_text="1.0 (the operator's default)",
    ).field()
    max_tokens: int | None = Declared(
        integer(1), "Maximum number of tokens the model may generate (at least 1).", (500,)
    ).field()
    top_p: float | None = Declared(
        number(0, 1),
        "Nucleus sampling: only tokens within this cumulative probability mass (0 to 1) are considered.",
        (0.9,),
    ).field()
    stop: str | tuple[str, ...] | None = Declared(
        one_or_list({"type": "string", "minLength": 1}, max_items=4, doc_type="string or list of up to 4"),
        "Stop sequence(s): generation stops before any of them.",
        ("\n\n", ["END", "###"]),
    ).field()
    output_schema: dict[str, Any] | None = Declared(
        Shape(
            {"anyOf": [{"type": "object"}, {"type": "string", "pattern": r"\.json$"}]},
            "mapping, or path to a .json file",
            convert_in_file=load_output_schema,
        ),
        "Structured output: a JSON Schema (Draft 2020-12) the answer must follow, written here or as a .json "
        "file next to the pipeline. The model is asked for JSON of that shape (response_format json_schema, "
        "strict); an answer that is not valid JSON or does not match fails the try, so task retries sample "
        "again. Later steps read the parsed answer as steps.<id>.json.",
        (
            {"type": "object", "properties": {"label": {"enum": ["bug", "feature"]}}, "required": ["label"]},
            "schemas/label.json",
        ),
        in_defaults=False,
    ).field()
    seed: int | None = Declared(
        integer(0),
        "Sampling seed: the same seed and parameters give repeatable answers where the model supports it.",
        (42,),
        argument=REQUEST,
    ).field()
    presence_penalty: float | None = Declared(
        number(-2, 2),
        "Penalises tokens that already appeared, encouraging new topics (-2 to 2).",
        (0.5,),
        argument=REQUEST,
    ).field()
    frequency_penalty: float | None = Declared(
        number(-2, 2),
        "Penalises tokens by how often they appeared, discouraging repetition (-2 to 2).",
        (0.5,),
        argument=REQUEST,
    ).field()
    requests_per_minute: float | None = Declared(
        RATE,
        "Client-side pace of this step's requests, for a for_each step above all: its items, and every other "
        "task asking this model of this endpoint, take turns on the worker host they run on, and on 429 they "
        "all wait for the Retry-After. Hosts pace separately: route the step to one queue, or give each host "
        "its share of the limit.",
        (400,),
        default_text=(
            "none: each request is sent as its task runs (the SDK retries a 429 on its own); "
            f"{DEFAULT_REQUESTS_PER_MINUTE} with input_file or for_each_mode: in_task"
        ),
    ).field()
    extra_body: dict[str, Any] | None = EXTRA_BODY.field()
    for_each: str | tuple[Any, ...] | None = FOR_EACH_ITEMS.field()
    for_each_mode: str | None = FOR_EACH_MODE.field()
    max_parallel: int | None = MAX_PARALLEL.field()
    input_file: str | None = INPUT_FILE.field()
    input_conn_id: str | None = INPUT_CONN_ID.field()
    id_field: str | None = CHAT_ID_FIELD.field()
    output: str | None = OUTPUT.field()
    output_conn_id: str | None = OUTPUT_CONN_ID.field()
    part_size: int | None = PART_SIZE.field()
    max_concurrency: int | None = CHAT_MAX_CONCURRENCY.field()
    on_item_error: str | None = ON_ITEM_ERROR.field()
    max_failed_fraction: float | None = MAX_FAILED_FRACTION.field()
    mode: str | None = MODE.field()
    completion_window: str | None = COMPLETION_WINDOW.field()
    depends_on: tuple[str, ...] = DEPENDS_ON.field(())
    description: str | None = STEP_DESCRIPTION.field()
    options: TaskOptions = OPTIONS.field(TaskOptions)
    position: Position = Position(1, 1)
    kind: StepKind = "chat"

    @property
    def runs_in_task(self) -> bool:
        """Its items (input_file, or for_each with for_each_mode: in_task) are all sent from one task."""
        return self.input_file is not None or (self.for_each is not None and self.for_each_mode == IN_TASK)

    DESCRIPTION: ClassVar[str] = (
        "A chat completion step: sends messages to a chat model; its answer is available to later steps as "
        "steps.<id>.content."
    )
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "type": "chat",
        "model": "Meta-Llama-3_3-70B-Instruct",
        "messages": [{"role": "user", "content": "Hello"}],
    }
    #: The operator's dict argument that REQUEST fields go into (the hook forwards it to the SDK).
    REQUEST_ARGUMENT: ClassVar[str] = "completion_kwargs"


@dataclass(frozen=True)
class EmbeddingStep:
    step_id: str = ""
    model: str = MODEL.field("")
    input: str | tuple[str, ...] | None = Declared(
        one_or_list({"type": "string"}),
        "Text to embed: one string, or a non-empty list of strings (one vector each). May be Jinja templates; "
        "a list can come from one: {{ params.documents }}, {{ steps.<id>.contents }}.",
        (
            "Apache Airflow is a workflow orchestration tool",
            ["First document", "Second document"],
            "{{ steps.summarize.content }}",
        ),
        templated=True,
        native=True,
        in_defaults=False,
        default_text="none: give input or input_file",
    ).field()
    input_file: str | None = INPUT_FILE.field()
    text_field: str | None = Declared(
        NON_EMPTY_STRING, "With input_file (JSON Lines): the field holding the text.", ("text",), default_text="text"
    ).field()
    id_field: str | None = ID_FIELD.field()
    output: str | None = OUTPUT.field()
    input_conn_id: str | None = INPUT_CONN_ID.field()
    output_conn_id: str | None = OUTPUT_CONN_ID.field()
    batch_size: int | None = Declared(
        integer(1, 100_000),
        "Texts per request: a longer input is sent as several requests (each also kept under the endpoint's "
        "2 MB body limit), and the vectors come back in input order.",
        (64,),
        default_text=str(DEFAULT_EMBEDDING_BATCH_SIZE),
    ).field()
    max_concurrency: int | None = Declared(
        integer(1, 64),
        "Requests in flight at once when the input needs several.",
        (4,),
        default_text=str(DEFAULT_EMBEDDING_CONCURRENCY),
    ).field()
    requests_per_minute: float | None = Declared(
        RATE,
        "Client-side pace of this step's requests; on 429 every request in flight waits for the Retry-After.",
        (400,),
        default_text=f"{DEFAULT_REQUESTS_PER_MINUTE} (OVH's limit per model with a token)",
    ).field()
    extra_body: dict[str, Any] | None = EXTRA_BODY.field()
    for_each: str | tuple[Any, ...] | None = FOR_EACH_ITEMS.field()
    max_parallel: int | None = MAX_PARALLEL.field()
    mode: str | None = MODE.field()
    completion_window: str | None = COMPLETION_WINDOW.field()
    depends_on: tuple[str, ...] = DEPENDS_ON.field(())
    description: str | None = STEP_DESCRIPTION.field()
    options: TaskOptions = OPTIONS.field(TaskOptions)
    position: Position = Position(1, 1)
    kind: StepKind = "embedding"

    DESCRIPTION: ClassVar[str] = (
        "An embedding step: turns text into vectors, available to later steps as steps.<id>.embeddings."
    )
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "type": "embedding",
        "model": "BGE-M3",
        "input": "Apache Airflow is a workflow orchestration tool",
    }
    REQUEST_ARGUMENT: ClassVar[str] = "embedding_kwargs"


Step = Union[ChatStep, EmbeddingStep]
#: Step classes by the `type:` a user writes.
STEP_CLASSES: dict[str, type[ChatStep] | type[EmbeddingStep]] = {"chat": ChatStep, "embedding": EmbeddingStep}


def templated_strings(value: Any) -> Iterator[str]:
    """The strings Jinja renders at run time in a spec object: its `templated` fields, and those of the
    declared objects it holds (message contents). The typed twin of `declare.templated_values`."""
    for item in template_fields(type(value)):
        attribute = getattr(getattr(value, item.group) if item.group else value, item.name)
        for part in attribute if isinstance(attribute, tuple) else (attribute,):
            if isinstance(part, str) and item.declared.templated:
                yield part
            elif item.declared.nested is not None and isinstance(part, item.declared.nested):
                yield from templated_strings(part)


@dataclass(frozen=True)
class DefaultArgs:
    """The pipeline's `default_args`: Airflow's own keys, durations already turned into timedeltas."""

    owner: str | None = Declared(NON_EMPTY_STRING, "Task owner shown in the Airflow UI.", ("data",)).field()
    retries: int | None = RETRIES.field()
    retry_delay: timedelta | None = RETRY_DELAY.field()
    execution_timeout: timedelta | None = EXECUTION_TIMEOUT.field()
    email: tuple[str, ...] = Declared(
        one_or_list({"type": "string", "minLength": 1}, min_items=0, always_list=True),
        "Address(es) Airflow emails on failure or retry.",
        ("data-team@example.com", ["a@example.com", "b@example.com"]),
    ).field(())
    email_on_failure: bool | None = Declared(BOOLEAN, "Send an email when a task fails.", (True,)).field()
    email_on_retry: bool | None = Declared(BOOLEAN, "Send an email when a task is retried.", (False,)).field()
    depends_on_past: bool | None = Declared(
        BOOLEAN, "A task runs only if its previous run succeeded.", (False,)
    ).field()

    def to_airflow(self) -> dict[str, object]:
        """Only the keys the user set, in the shape Airflow's `default_args` expects."""
        values: dict[str, object] = plain_value(self)
        return values


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """One pipeline file: one DAG of chat and embedding steps, defaults already merged into steps."""

    dag_id: str = Declared(
        DAG_ID,
        "The Airflow DAG id: letters, digits, '_', '.', '-' (at most 250 characters). Defaults to the file "
        "name without .yaml/.yml; must be unique among the pipelines loaded together.",
        ("daily_report",),
        default_text="the file name without .yaml/.yml",
    ).field("")
    description: str | None = Declared(
        STRING, "What the pipeline does; shown in the Airflow UI.", ("Daily summary of the data team's report",)
    ).field()
    schedule: str | tuple[str, ...] | None = Declared(
        SCHEDULE,
        "When Airflow runs the pipeline: a cron expression ('0 6 * * 1-5'), a preset (@once, @hourly, @daily, "
        "@weekly, @monthly, @quarterly, @yearly, @continuous), null for manual runs only, or a list of asset "
        "URIs (Datasets on Airflow 2.11): a run each time they have all been updated (data-aware scheduling, "
        "see a step's outlets). Crons are checked with croniter, the library Airflow uses, so exactly what "
        "Airflow accepts passes. A cron or preset needs a start_date; @continuous needs max_active_runs: 1.",
        ("@daily", "0 6 * * 1-5", None, ["s3://lake/reports/daily.json"]),
        default_text="null (manual runs only)",
    ).field()
    start_date: datetime | None = Declared(
        DATE,
        "First logical date: a YAML date (2024-01-01) or date-time (2024-01-01T06:00:00Z), years 1000 to "
        "9000. Times without a zone are UTC.",
        ("2024-01-01", "2024-01-01T06:00:00+02:00"),
    ).field()
    end_date: datetime | None = Declared(
        DATE, "Last logical date (optional), same format as start_date; not before it.", ("2024-12-31",)
    ).field()
    catchup: bool = Declared(
        BOOLEAN, "Whether Airflow runs the intervals missed since start_date.", (False,), default_text="false"
    ).field(False)
    tags: tuple[str, ...] = Declared(TAGS, "Labels to filter DAGs in the Airflow UI.", (["reports", "llm"],)).field(())
    max_active_runs: int | None = Declared(
        integer(1), "Maximum number of runs of this DAG at the same time.", (1,)
    ).field()
    max_active_tasks: int | None = Declared(
        integer(1), "Maximum number of this DAG's tasks running at the same time, across its runs.", (8,)
    ).field()
    dagrun_timeout: timedelta | None = Declared(
        DURATION, "A run still going after this long is failed by Airflow.", ("2h",)
    ).field()
    owner_links: dict[str, str] | None = Declared(
        Shape(
            {
                "type": "object",
                # Airflow's check: a mailto: address, or a URI with a scheme and a host.
                "additionalProperties": {
                    "type": "string",
                    "pattern": r"^(mailto:[^?#]|[A-Za-z][A-Za-z0-9+.-]*://[^/?#])",
                },
            },
            "mapping of owner → link",
            dict,
            problem="is not a link Airflow accepts",
            hint="write an http(s) URL (https://wiki.example.com/team) or a mailto: address",
        ),
        "Links for the owners shown in the Airflow UI: owner name → an http(s) URL or a mailto: address.",
        ({"data": "https://wiki.example.com/data-team"},),
    ).field()
    doc_md: str | None = Declared(
        STRING,
        "Markdown shown in the DAG's Docs panel, above the table of steps ovh-ai-dagfactory adds.",
        ("Owned by the data team; see the runbook.",),
        argument=None,  # merged with the generated table: factory/mapping.py doc_md
    ).field()
    params: dict[str, Any] = Declared(
        PARAMS,
        "Airflow params, available in templates as {{ params.<name> }} and overridable when triggering a run: "
        "name → default value, or name → a typed param, a mapping with a `type` and Airflow Param's JSON Schema "
        "keywords (default, description, enum, minimum, ...), checked by validate and by Airflow on trigger.",
        ({"audience": "executives", "top_n": {"type": "integer", "minimum": 1, "default": 5}},),
    ).field(factory=dict)
    default_args: DefaultArgs = Declared(
        Shape({"type": "object"}, "mapping"),
        "Airflow default_args applied to every task of the DAG.",
        ({"owner": "data", "retries": 3, "retry_delay": "30s"},),
        nested=DefaultArgs,
    ).field(factory=DefaultArgs)
    connection: str | None = Declared(
        CONNECTION_ID,
        "Airflow connection id used by every step that does not set its own (default: ovh_ai_endpoints_default).",
        ("ovh_ai_endpoints_default",),
        argument=None,
    ).field()
    steps: tuple[Step, ...] = ()  # in file order; the `steps` and `defaults` keys are declared in schema_build
    source_file: str = ""
    #: Where each top-level key (schedule, params, ...) is written, for errors found after parsing
    #: (Airflow refusing a value when the DAG is built). A key not written in the file is absent.
    field_positions: dict[str, Position] = dataclasses.field(default_factory=dict)

    def position_of(self, name: str) -> Position:
        """Where top-level key `name` is written; 1:1 when it is not in the file."""
        return self.field_positions.get(name, Position(1, 1))

    @property
    def dag_id_position(self) -> Position:
        """Where `dag_id:` is written; 1:1 when the dag_id comes from the file name. Errors about the
        dag_id (duplicates across files) point here without reading the file again."""
        return self.position_of("dag_id")

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(step_id)

    def upstream_of(self, step_id: str) -> tuple[str, ...]:
        """Explicit `depends_on` plus the steps that templates reference as `steps.<id>`."""
        from ovh_ai_dagfactory.spec.references import referenced_steps

        step = self.step(step_id)
        implied = [ref for text in templated_strings(step) for ref in referenced_steps(text)]
        ordered: dict[str, None] = dict.fromkeys((*step.depends_on, *implied))
        ordered.pop(step_id, None)
        return tuple(ordered)


__all__ = [
    "SAME",
    "ChatStep",
    "DefaultArgs",
    "EmbeddingStep",
    "Message",
    "Pipeline",
    "Position",
    "Step",
    "TaskOptions",
]

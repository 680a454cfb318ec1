"""The chat job operator: chat at volume in one task. Items from a JSON Lines or .txt file (or an
inline list), each rendered into chat messages with Airflow's own sandboxed Jinja environment,
sent one request per item by the job engine (`jobs/chat.py`: concurrency, pacing, retries, the
errors policy), the rows written to parts in object storage with a manifest in XCom, or the rows
themselves in XCom under a size guard.

`messages` is not a template field: Airflow would render `{{ item.text }}` before any item
exists. The operator renders it itself, once per item, with the task's context plus `item` and
`item_index`; each template is compiled once, at the start of `execute()`. The UI shows the
message templates as the task's JSON documentation (`doc_json`), unless the task has a doc of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.calls.parameters import CHAT_PARAMETERS
from ovh_ai_dagfactory.calls.results import check_output_schema
from ovh_ai_dagfactory.compat import Context
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.operators.ai_endpoints import (
    CHAT_ARGUMENTS,
    DEFAULT_MAX_XCOM_BYTES,
    OVHCloudAIEndpointsBaseOperator,
    _extra_parameters,
    _one_response_format,
    schema_name,
)
from ovh_ai_dagfactory.provider_info import (
    CHAT_JOB_ON_ITEM_ERROR_MODES,
    DEFAULT_CHAT_JOB_CONCURRENCY,
    DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION,
    DEFAULT_CHAT_JOB_ON_ITEM_ERROR,
    DEFAULT_CHAT_JOB_PART_SIZE,
    DEFAULT_REQUESTS_PER_MINUTE,
)

# The job's own arguments: refused in completion_kwargs (each parameter has one place).
CHAT_JOB_ARGUMENTS = (*CHAT_ARGUMENTS, "items", "part_size", "max_concurrency", "requests_per_minute")
_DOC_FIELDS = ("doc", "doc_md", "doc_json", "doc_yaml", "doc_rst")


class OVHCloudAIEndpointsChatJobOperator(OVHCloudAIEndpointsBaseOperator):
    """One chat completion per item of `input_file` or `items`, in this one task; returns the
    manifest (with `output_uri`) or `{"object": "list", "data": [rows], "model", "usage", "failed"}`.

    :param model: chat model, e.g. `Meta-Llama-3_3-70B-Instruct` (templated).
    :param messages: `{"role", "content"}` dicts whose strings are Jinja templates rendered once per
        item with the task's context plus `item` (the record) and `item_index` (not templated by
        Airflow itself: see the module's docstring).
    :param items: an inline list of items (templated; up to a few thousand), instead of `input_file`.
    :param input_file: a JSON Lines file (an item is one object) or a .txt file (an item is
        `{"id": <line number>, "text": <line>}`), an ObjectStoragePath URI (templated).
    :param input_conn_id: the Airflow connection of `input_file` (templated).
    :param id_field: the field of an item carried to its row as `id` (default "id"; templated).
    :param temperature: / max_tokens / top_p / stop: sent only when set.
    :param completion_kwargs: any other chat parameter (templated), as on the chat operator.
    :param output_schema: a JSON Schema each answer must match: sent as a strict `json_schema`
        `response_format` named after the task id; each row then has `json`, and an answer that
        does not match is that item's error.
    :param output_uri: a directory URI: rows in parts of `part_size` items, `manifest.json`, resume
        (templated). Without it, the rows go to XCom, at most `max_xcom_bytes` (16 MiB; None: no limit).
    :param output_conn_id: the Airflow connection of `output_uri` (templated).
    :param part_size: items per part (default 1000).
    :param max_concurrency: requests in flight (default 4).
    :param requests_per_minute: client-side pacing (default 400); None or 0: none.
    :param on_item_error: "record" (default: the item's row holds the error) or "fail" (the first
        failed item fails the task).
    :param max_failed_fraction: with "record", the share of failed items above which the task
        fails anyway (default 0.05, judged once 20 items are done, or at the end).
    :param ovh_conn_id: Airflow connection id (templated).
    """

    template_fields: Sequence[str] = (
        "model",
        "items",
        "input_file",
        "input_conn_id",
        "id_field",
        "output_uri",
        "output_conn_id",
        "completion_kwargs",
        "ovh_conn_id",
    )
    template_fields_renderers = {"items": "json", "completion_kwargs": "json"}
    ui_color = "#e3ecfc"

    def __init__(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        items: list[Any] | str | None = None,
        input_file: str | None = None,
        input_conn_id: str | None = None,
        id_field: str | None = "id",
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        completion_kwargs: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        output_uri: str | None = None,
        output_conn_id: str | None = None,
        part_size: int = DEFAULT_CHAT_JOB_PART_SIZE,
        max_concurrency: int = DEFAULT_CHAT_JOB_CONCURRENCY,
        requests_per_minute: float | None = DEFAULT_REQUESTS_PER_MINUTE,
        on_item_error: str = DEFAULT_CHAT_JOB_ON_ITEM_ERROR,
        max_failed_fraction: float = DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION,
        max_xcom_bytes: int | None = DEFAULT_MAX_XCOM_BYTES,
        ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ovh_conn_id = ovh_conn_id
        self.model = model
        self.messages = messages
        self.items = items
        self.input_file = input_file
        self.input_conn_id = input_conn_id
        self.id_field = id_field
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_p = top_p
        self.stop = stop
        self.completion_kwargs = completion_kwargs
        self.output_schema = output_schema
        self.output_uri = output_uri  # not `output`: BaseOperator.output is the task's XComArg
        self.output_conn_id = output_conn_id
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.on_item_error = on_item_error
        self.max_failed_fraction = max_failed_fraction
        self.max_xcom_bytes = max_xcom_bytes
        # Checks of the arguments alone: a DAG import error, not a failed task. Nothing is read.
        if (items is None) == (input_file is None):
            raise InvalidRequestError(
                "Invalid request: give either `items` (a list) or `input_file` (a JSON Lines or .txt URI), not both "
                "and not neither."
            )
        _check_messages(messages)
        if on_item_error not in CHAT_JOB_ON_ITEM_ERROR_MODES:
            raise InvalidRequestError(
                f"Invalid request: on_item_error must be 'record' or 'fail', not {on_item_error!r}."
            )
        if isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < 1:
            raise InvalidRequestError(f"Invalid request: part_size must be a whole number ≥ 1, not {part_size!r}.")
        extra = _extra_parameters("completion_kwargs", completion_kwargs, CHAT_JOB_ARGUMENTS, rendered=False)
        if output_schema is not None:
            check_output_schema(output_schema)
            _one_response_format(extra)
        if not any(getattr(self, name, None) for name in _DOC_FIELDS):
            # What the UI shows of the message templates (they are not template fields).
            self.doc_json = json.dumps({"messages": messages}, indent=2, default=str)

    def build_request(self, context: Context) -> dict[str, Any]:
        extra = _extra_parameters("completion_kwargs", self.completion_kwargs, CHAT_JOB_ARGUMENTS, rendered=True)
        if self.output_schema is not None:
            _one_response_format(extra)  # again: a whole-dict template is known only now
        items = self.items
        if isinstance(items, str):
            raise InvalidRequestError(
                f"Invalid request: items rendered to a string ({items[:80]!r}), not a list. A template that renders "
                "the whole list needs the DAG's render_template_as_native_obj=True."
            )
        return {
            "model": self.model,
            "items": items,
            "render": MessageTemplates(self.messages, self.get_template_env()).renderer(context),
            "render_source": self.messages,
            "input_file": self.input_file,
            "input_conn_id": self.input_conn_id,
            "id_field": self.id_field,
            "output_schema": self.output_schema,
            "output_schema_name": schema_name(self.task_id),
            **{name: getattr(self, name) for name in CHAT_PARAMETERS},
            **extra,
        }

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        job: dict[str, Any] = {
            "part_size": self.part_size,
            "max_concurrency": self.max_concurrency,
            "requests_per_minute": self.requests_per_minute,
            "on_item_error": self.on_item_error,
            "max_failed_fraction": self.max_failed_fraction,
        }
        if self.output_uri:
            return self.hook.chat_items(**request, **job, output=self.output_uri, output_conn_id=self.output_conn_id)
        return self.hook.chat_items(**request, **job, max_result_bytes=self.max_xcom_bytes)

    def log_usage(self, response: dict[str, Any]) -> None:
        super().log_usage(response)
        self.log.info("Chat job: %s items, %s failed", f"{_count(response):,}", f"{response.get('failed', 0):,}")


class MessageTemplates:
    """`messages` with each string compiled once as a template of `env` (the task's sandboxed
    Jinja environment); `renderer(context)` renders them for one item at a time."""

    def __init__(self, messages: list[dict[str, Any]], env: Any) -> None:
        self.compiled = _compile(messages, env)

    def renderer(self, context: Context) -> Any:
        # One copy of the context (a plain dict) per task, not per item: Airflow's Context is a
        # lazy mapping, and Jinja copies what it is given at each render.
        base = dict(context.items())

        def render(item: Any, item_index: int) -> list[dict[str, Any]]:
            values = {**base, "item": item, "item_index": item_index}
            try:
                return _render(self.compiled, values)
            except InvalidRequestError:
                raise
            except Exception as error:  # a template's own error (an undefined name, a filter)
                raise InvalidRequestError(
                    f"Invalid request: the messages of item {item_index} do not render: {type(error).__name__}: "
                    f"{error}. `item` is the item (a JSON Lines object, or {{'id', 'text'}} for a .txt line) and "
                    "`item_index` its index; e.g. {{ item.text }}."
                ) from None

        return render


def _compile(value: Any, env: Any) -> Any:
    if isinstance(value, str):
        return env.from_string(value) if ("{{" in value or "{%" in value) else value
    if isinstance(value, dict):
        return {key: _compile(inner, env) for key, inner in value.items()}
    if isinstance(value, list):
        return [_compile(inner, env) for inner in value]
    return value


def _render(value: Any, values: dict[str, Any]) -> Any:
    if hasattr(value, "render"):
        return value.render(values)
    if isinstance(value, dict):
        return {key: _render(inner, values) for key, inner in value.items()}
    if isinstance(value, list):
        return [_render(inner, values) for inner in value]
    return value


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequestError(
            "Invalid request: messages must be a non-empty list of message dicts, e.g. "
            "[{'role': 'user', 'content': 'Classify: {{ item.text }}'}]; its strings are rendered once per item."
        )


def _count(response: dict[str, Any]) -> int:
    return int(response["count"]) if "count" in response else len(response.get("data") or [])


__all__ = ["CHAT_JOB_ARGUMENTS", "MessageTemplates", "OVHCloudAIEndpointsChatJobOperator"]

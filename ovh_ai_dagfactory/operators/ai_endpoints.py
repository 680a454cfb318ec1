"""Operators for OVHcloud AI Endpoints: chat completions and embeddings.

Operators own the Airflow side (templated fields, XCom, logging); the hook owns the connection,
the client and the errors. Constructors only store arguments: no hook, client or connection is
created while a DAG file is parsed.

`execute()` is a short pipeline of small methods so a subclass (e.g. the DAG factory's steps) can
change one stage without copying the rest:

    build_request(context) -> dict      the keyword arguments of the hook call
    call_endpoint(request) -> dict      the hook call, returning the wire JSON as a dict
    log_usage(response)                 token counts, never the content
    check_result(response, request)     NoContentError unless the answer carries its result
    result(response, context) -> Any    what is pushed to XCom (the whole response by default)

The result check lives here, not in the hook: the hook returns any well-formed answer to its Python
callers (a tool-calls-only answer is legitimate there), while an operator's XCom feeds the next
task, which must never receive a null answer rendered as the text "None". What a result is, is
defined once, in `calls/results.py`.

Request parameters the operators do not name go in `completion_kwargs` / `embedding_kwargs`
(templated), forwarded to the hook and from there to the openai SDK. A parameter has one place: a
key of those dicts that is also an operator argument (`temperature`, `max_tokens`, ...) is refused
with `InvalidRequestError` when the operator is built, and again after rendering; no value ever
silently wins over another.

`output_schema` (chat) asks for structured output: the request carries a `json_schema`
`response_format` (strict, named after the task id), and the answer must parse as JSON and match
the schema (`results.chat_json`), else the try fails with `StructuredOutputError`, which the task's
retries sample again. XCom still gets the whole response; `chat_json(response)` reads the object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.calls.parameters import CHAT_PARAMETERS, json_schema_response_format
from ovh_ai_dagfactory.calls.results import chat_content, chat_json, check_output_schema, embedding_vectors
from ovh_ai_dagfactory.compat import BaseOperator, Context
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.jobs.batches import DEFAULT_MAX_REQUEST_BYTES, check_batch_settings
from ovh_ai_dagfactory.jobs.storage import read_texts
from ovh_ai_dagfactory.provider_info import (
    DEFAULT_EMBEDDING_BATCH_SIZE,
    DEFAULT_EMBEDDING_CONCURRENCY,
    DEFAULT_REQUESTS_PER_MINUTE,
)

# The request parameters each operator takes as its own arguments: they have no second place in
# completion_kwargs / embedding_kwargs.
CHAT_ARGUMENTS = ("model", "messages", *CHAT_PARAMETERS)
EMBEDDING_ARGUMENTS = ("model", "input")
# The embedding operator's own arguments about how a large input is run: not request parameters,
# refused in embedding_kwargs all the same (the hook would take them as its own).
EMBEDDING_JOB_ARGUMENTS = (
    "batch_size",
    "max_concurrency",
    "requests_per_minute",
    "max_request_bytes",
    "max_result_bytes",
)
_EMBEDDING_OWN_ARGUMENTS = EMBEDDING_ARGUMENTS + EMBEDDING_JOB_ARGUMENTS
DEFAULT_MAX_XCOM_BYTES = 16 * 1024 * 1024
_SCHEMA_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


class OVHCloudAIEndpointsBaseOperator(BaseOperator):
    """What the chat and embedding operators share: the connection, the hook and `execute()`.

    No `__init__` here, on purpose: Airflow wraps every class's own `__init__` in `apply_defaults`,
    which merges default_args again at each level, and DAG files build thousands of these. Each
    concrete operator takes `ovh_conn_id` itself (one level fewer for every task).
    """

    ovh_conn_id: str

    @cached_property
    def hook(self) -> OVHCloudAIEndpointsHook:
        # Built at execute time, after rendering: `ovh_conn_id` may be a template.
        return OVHCloudAIEndpointsHook(ovh_conn_id=self.ovh_conn_id)

    def execute(self, context: Context) -> Any:
        request = self.build_request(context)
        response = self.call_endpoint(request)
        self.log_usage(response)  # first: an empty answer still cost tokens
        self.check_result(response, request)
        return self.result(response, context)

    def build_request(self, context: Context) -> dict[str, Any]:
        raise NotImplementedError

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def check_result(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        """Raise NoContentError when `response` lacks the result the next task would read."""

    def log_usage(self, response: dict[str, Any]) -> None:
        usage = response.get("usage") or {}
        self.log.info(
            "AI Endpoints usage for model %s: prompt_tokens=%s completion_tokens=%s total_tokens=%s",
            response.get("model"),
            usage.get("prompt_tokens"),
            usage.get("completion_tokens", 0),
            usage.get("total_tokens"),
        )

    def result(self, response: dict[str, Any], context: Context) -> Any:
        return response


class OVHCloudAIEndpointsChatCompletionsOperator(OVHCloudAIEndpointsBaseOperator):
    """Generate a chat completion; returns the OpenAI-shaped response dict (pushed to XCom).

    :param model: model name, e.g. `Meta-Llama-3_3-70B-Instruct` (templated).
    :param messages: list of `{"role": ..., "content": ...}` (templated).
    :param temperature: 0-2, default 1.0. `max_tokens`, `top_p`, `stop`: sent only when set.
    :param completion_kwargs: any other parameter of the chat completions request (`seed`,
        `presence_penalty`, `frequency_penalty`, `response_format`, `tools`, `user`, ...) and the
        openai SDK's `extra_body` / `extra_headers` / `extra_query` (templated). A key that is an
        argument above is refused (`InvalidRequestError`).
    :param output_schema: a JSON Schema (Draft 2020-12) mapping the answer must match: sent as a
        strict `json_schema` `response_format` named after the task id, and checked on the answer
        (`StructuredOutputError`, retried by the task's retries, when it is not JSON or does not
        match). Not templated. Refused together with a `response_format` in `completion_kwargs`.
    :param requests_per_minute: pace the request with every other task of this worker host asking
        the same model of the same endpoint (the items of a mapped task, above all): at most this
        many start per minute, and a 429 holds them all for its Retry-After (`hook.paced_chat_completion`).
        None (the default): the request is sent as the task runs, and the SDK retries a 429 alone.
    :param ovh_conn_id: Airflow connection id (templated).
    """

    template_fields: Sequence[str] = ("model", "messages", "completion_kwargs", "ovh_conn_id")
    template_fields_renderers = {"messages": "json", "completion_kwargs": "json"}
    ui_color = "#e3ecfc"

    def __init__(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        temperature: float | None = 1.0,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        completion_kwargs: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        requests_per_minute: float | None = None,
        ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ovh_conn_id = ovh_conn_id
        self.requests_per_minute = requests_per_minute
        self.model = model
        self.messages = messages
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_p = top_p
        self.stop = stop
        self.completion_kwargs = completion_kwargs
        self.output_schema = output_schema
        extra = _extra_parameters("completion_kwargs", completion_kwargs, CHAT_ARGUMENTS, rendered=False)
        if output_schema is not None:
            check_output_schema(output_schema)  # a DAG import error, not a failed task
            _one_response_format(extra)

    def build_request(self, context: Context) -> dict[str, Any]:
        extra = _extra_parameters("completion_kwargs", self.completion_kwargs, CHAT_ARGUMENTS, rendered=True)
        request = {
            "model": self.model,
            "messages": self.messages,
            **{name: getattr(self, name) for name in CHAT_PARAMETERS},
            **extra,
        }
        if self.output_schema is not None:
            _one_response_format(extra)  # again: a whole-dict template is known only now
            request["response_format"] = json_schema_response_format(schema_name(self.task_id), self.output_schema)
        return request

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.requests_per_minute:
            return self.hook.paced_chat_completion(self.requests_per_minute, **request)
        return self.hook.chat_completion(**request)

    def check_result(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        """The first choice must carry text: content that is not null, empty or only whitespace;
        with `output_schema`, JSON that matches it (`StructuredOutputError` otherwise)."""
        chat_content(response, model=request.get("model"), max_tokens=request.get("max_tokens"))
        if self.output_schema is not None:
            chat_json(response, self.output_schema)


class OVHCloudAIEndpointsEmbeddingOperator(OVHCloudAIEndpointsBaseOperator):
    """Embed one text or any number of texts; returns the OpenAI-shaped response dict (pushed to XCom).

    An input of at most `batch_size` texts is sent in one request, as it always was. A larger one is
    split into requests of at most `batch_size` texts under the endpoint's 2 MB body limit, sent
    `max_concurrency` at a time, paced to `requests_per_minute`, paused together on 429 and retried
    per batch (`jobs/runner.py`); the response is still one `list` with `data[i].index`
    the index in `input` and `usage` summed.

    :param model: embedding model, e.g. `BGE-M3` (templated).
    :param input: a string or a list of strings (templated).
    :param embedding_kwargs: any other parameter of the embeddings request (`dimensions`, `user`,
        `encoding_format`, ...) and the openai SDK's `extra_body` / `extra_headers` /
        `extra_query` (templated). `model`, `input` and the batching arguments are refused there.
    :param batch_size: texts per request (default 64).
    :param max_concurrency: requests in flight (default 4).
    :param requests_per_minute: client-side pacing (default 400, OVH's limit per model with a
        token); None or 0: no pacing (429s still pause every request).
    :param max_xcom_bytes: the largest result pushed to XCom (default 16 MiB, about a thousand
        1024-dimension vectors); above it the task fails after the first batch, suggesting
        `output`. None: no limit.
    :param input_file: instead of `input`, a JSON Lines file (the text in `text_field`, default
        "text"; an id in `id_field`, optional) or a .txt file (one text per line) as an Airflow
        ObjectStoragePath URI (file://, s3://, ...), read as a stream (templated).
    :param output_uri: a directory URI (`output` in a pipeline's YAML; `output` itself is
        Airflow's XComArg of the task): the vectors are written there in parts (one per batch, JSON
        Lines with index, id, text_sha256, embedding) and XCom gets the manifest; a retried try
        keeps the parts already written (templated).
    :param input_conn_id: / output_conn_id: Airflow connections of those URIs (templated).
    :param ovh_conn_id: Airflow connection id (templated).
    """

    template_fields: Sequence[str] = (
        "model",
        "input",
        "embedding_kwargs",
        "ovh_conn_id",
        "input_file",
        "output_uri",
        "input_conn_id",
        "output_conn_id",
    )
    template_fields_renderers = {"input": "json", "embedding_kwargs": "json"}
    ui_color = "#e3f7ec"

    def __init__(
        self,
        *,
        model: str,
        input: str | list[str] | None = None,  # noqa: A002 - the seed's (and OpenAI's) parameter name
        embedding_kwargs: dict[str, Any] | None = None,
        input_file: str | None = None,
        text_field: str = "text",
        id_field: str | None = None,
        output_uri: str | None = None,
        input_conn_id: str | None = None,
        output_conn_id: str | None = None,
        batch_size: int = DEFAULT_EMBEDDING_BATCH_SIZE,
        max_concurrency: int = DEFAULT_EMBEDDING_CONCURRENCY,
        requests_per_minute: float | None = DEFAULT_REQUESTS_PER_MINUTE,
        max_xcom_bytes: int | None = DEFAULT_MAX_XCOM_BYTES,
        ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ovh_conn_id = ovh_conn_id
        self.model = model
        self.input = input
        self.embedding_kwargs = embedding_kwargs
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.max_xcom_bytes = max_xcom_bytes
        self.input_file = input_file
        self.text_field = text_field
        self.id_field = id_field
        self.output_uri = output_uri  # not `output`: BaseOperator.output is the task's XComArg
        self.input_conn_id = input_conn_id
        self.output_conn_id = output_conn_id
        if (input is None) == (input_file is None):
            raise InvalidRequestError(
                "Invalid request: give either `input` (a text or a list of texts) or `input_file` (a JSON Lines "
                "or .txt URI), not both and not neither."
            )
        _extra_parameters("embedding_kwargs", embedding_kwargs, _EMBEDDING_OWN_ARGUMENTS, rendered=False)
        check_batch_settings(batch_size, DEFAULT_MAX_REQUEST_BYTES)  # a DAG import error, not a failed task

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        pacing: dict[str, Any] = {
            "batch_size": self.batch_size,
            "max_concurrency": self.max_concurrency,
            "requests_per_minute": self.requests_per_minute,
        }
        if self.output_uri:  # XCom gets the manifest
            return self.hook.embed_to_storage(
                output=self.output_uri,
                output_conn_id=self.output_conn_id,
                input_file=self.input_file,
                text_field=self.text_field,
                id_field=self.id_field,
                input_conn_id=self.input_conn_id,
                **request,
                **pacing,
            )
        if self.input_file:
            texts = read_texts(
                self.input_file, text_field=self.text_field, id_field=self.id_field, conn_id=self.input_conn_id
            )
            request = {**request, "input": (text for _, text in texts)}
        return self.hook.embed_texts(**request, **pacing, max_result_bytes=self.max_xcom_bytes)

    def build_request(self, context: Context) -> dict[str, Any]:
        extra = _extra_parameters("embedding_kwargs", self.embedding_kwargs, _EMBEDDING_OWN_ARGUMENTS, rendered=True)
        request = {"model": self.model, **extra}
        if self.input_file is None:
            request["input"] = self.input
        return request

    def check_result(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        """One non-empty vector per input, each input's index present once (the batches were
        checked one by one when the vectors went to `output`)."""
        if self.output_uri:
            return
        expected = _input_count(request["input"]) if isinstance(request.get("input"), (str, list)) else None
        embedding_vectors(response, expected=expected, model=request.get("model"))


def _extra_parameters(name: str, value: Any, arguments: Sequence[str], *, rendered: bool) -> dict[str, Any]:
    """`value` (an operator's completion_kwargs / embedding_kwargs) as a dict, or InvalidRequestError
    when it is not a dict or repeats one of the operator's own `arguments`.

    Before rendering, a string is a template whose dict is not known yet (a DAG with
    render_template_as_native_obj=True renders it to one); after rendering only a dict or None is.
    """
    if value is None or (isinstance(value, str) and not rendered):
        return {}
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid request: {name} must be a dict of request parameters, not {type(value).__name__} "
            f"{str(value)[:80]!r}. A template that renders the whole dict needs the DAG's "
            "render_template_as_native_obj=True; otherwise template its values."
        )
    repeated = [key for key in value if key in arguments]
    if repeated:
        key = repeated[0]
        raise InvalidRequestError(
            f"Invalid request: {name} sets {', '.join(repr(k) for k in repeated)}, which the operator "
            f"takes as its own argument: pass {key}=... to the operator, not {name}={{'{key}': ...}}. "
            f"Each parameter has one place, so that no value silently wins over another; {name} is for "
            "the parameters the operator does not name."
        )
    return dict(value)


def schema_name(task_id: str) -> str:
    """The `json_schema.name` sent for a task's `output_schema`: the task id (a task group's
    `group.task` included) with every character OpenAI does not allow (`^[a-zA-Z0-9_-]{1,64}$`)
    replaced by `_`, cut to 64 characters."""
    return _SCHEMA_NAME_UNSAFE.sub("_", task_id)[:64] or "output"


def _one_response_format(extra: Mapping[str, Any]) -> None:
    if "response_format" in extra:
        raise InvalidRequestError(
            "Invalid request: completion_kwargs sets 'response_format' and the operator has output_schema, "
            "which sends its own response_format ({'type': 'json_schema', ...}): pass one or the other. Each "
            "parameter has one place, so that no value silently wins over another."
        )


def _input_count(value: Any) -> int:
    # A list of token ids is one input, as in OpenAI's API; the operator itself takes str or list[str].
    if isinstance(value, list) and not all(isinstance(item, int) for item in value):
        return len(value)
    return 1


__all__ = [
    "OVHCloudAIEndpointsBaseOperator",
    "OVHCloudAIEndpointsChatCompletionsOperator",
    "OVHCloudAIEndpointsEmbeddingOperator",
    "schema_name",
]

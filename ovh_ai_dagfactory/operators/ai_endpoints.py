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
task, which must never receive a null answer rendered as the text "None".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ovh_ai_dagfactory.compat import BaseOperator, Context
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.hooks.errors import NoContentError

_QUOTED = 200  # characters of a refusal quoted in a message


class OVHCloudAIEndpointsBaseOperator(BaseOperator):
    """What the chat and embedding operators share: the connection, the hook and `execute()`."""

    def __init__(self, *, ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ovh_conn_id = ovh_conn_id

    @cached_property
    def hook(self) -> OVHCloudAIEndpointsHook:
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
    :param ovh_conn_id: Airflow connection id.
    """

    template_fields: Sequence[str] = ("model", "messages")
    template_fields_renderers = {"messages": "json"}
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
        ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(ovh_conn_id=ovh_conn_id, **kwargs)
        self.model = model
        self.messages = messages
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.top_p = top_p
        self.stop = stop

    def build_request(self, context: Context) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": self.messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "stop": self.stop,
        }

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.hook.chat_completion(**request)

    def check_result(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        """The first choice must carry text: content that is not null, empty or only whitespace."""
        choices = response.get("choices") or []
        choice = choices[0] if choices else {}
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, str) and content.strip():
            return
        finish_reason = choice.get("finish_reason")
        if not choices:
            returned, hint = "an empty 'choices' list", "The endpoint produced no answer at all."
        else:
            returned, hint = _why_no_content(message, content, finish_reason, request)
        raise NoContentError(
            f"No content: chat completion of model '{request.get('model')}' returned {returned} "
            f"(finish_reason={finish_reason!r}, response id {response.get('id')!r}). {hint} The task fails "
            'instead of passing an empty answer (or the text "None") to the next tasks; not retried by '
            "task retries, since the same request usually gets the same kind of answer.",
            finish_reason=finish_reason,
        )


class OVHCloudAIEndpointsEmbeddingOperator(OVHCloudAIEndpointsBaseOperator):
    """Embed one text or a batch; returns the OpenAI-shaped response dict (pushed to XCom).

    :param model: embedding model, e.g. `BGE-M3` (templated).
    :param input: a string or a list of strings (templated).
    :param ovh_conn_id: Airflow connection id.
    """

    template_fields: Sequence[str] = ("model", "input")
    template_fields_renderers = {"input": "json"}
    ui_color = "#e3f7ec"

    def __init__(
        self,
        *,
        model: str,
        input: str | list[str],  # noqa: A002 - the seed's (and OpenAI's) parameter name
        ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(ovh_conn_id=ovh_conn_id, **kwargs)
        self.model = model
        self.input = input

    def build_request(self, context: Context) -> dict[str, Any]:
        return {"model": self.model, "input": self.input}

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.hook.create_embedding(**request)

    def check_result(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        """One non-empty vector per input, each input's index present once."""
        data = response.get("data") or []
        expected = _input_count(request.get("input"))
        missing = [i for i, item in enumerate(data) if not item.get("embedding")]
        indexes = sorted({item.get("index", i) for i, item in enumerate(data)})
        if not data:
            returned = "an empty 'data' list" if "data" in response else "no 'data'"
        elif missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            returned = f"no vector in data[{missing[0]}]{more}"
        elif len(data) != expected or indexes != list(range(expected)):
            returned = f"{len(data)} vector(s) with indexes {indexes[:10]} for {expected} input(s)"
        else:
            return
        raise NoContentError(
            f"No vectors: embedding of model '{request.get('model')}' returned {returned}; one vector per "
            "input was expected. The task fails instead of passing missing vectors to the next tasks; not "
            "retried by task retries. Check the model is an embedding model and the inputs are not empty."
        )


def _why_no_content(
    message: dict[str, Any], content: Any, finish_reason: Any, request: dict[str, Any]
) -> tuple[str, str]:
    """What a chat answer without text returned instead, and what to do about it."""
    if message.get("refusal"):
        refusal = " ".join(str(message["refusal"]).split())[:_QUOTED]
        return f"a refusal ({refusal!r})", "Rephrase the prompt or use another model."
    if message.get("tool_calls"):
        calls = [call for call in message["tool_calls"] if isinstance(call, dict)]
        names = [str((call.get("function") or {}).get("name")) for call in calls]
        return f"tool calls only ({', '.join(names)})", "This operator does not run tools: ask for a text answer."
    returned = "no message" if not message else "content null" if content is None else "empty content"
    if finish_reason == "length":
        return returned, (
            f"The model reached max_tokens ({request.get('max_tokens')}) before writing its answer (reasoning "
            "models spend tokens thinking first): raise max_tokens."
        )
    if finish_reason == "content_filter":
        return returned, "The endpoint's content filter withheld the answer."
    return returned, "Check the prompt and the model's parameters."


def _input_count(value: Any) -> int:
    # A list of token ids is one input, as in OpenAI's API; the operator itself takes str or list[str].
    if isinstance(value, list) and not all(isinstance(item, int) for item in value):
        return len(value)
    return 1


__all__ = [
    "OVHCloudAIEndpointsBaseOperator",
    "OVHCloudAIEndpointsChatCompletionsOperator",
    "OVHCloudAIEndpointsEmbeddingOperator",
]

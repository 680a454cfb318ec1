"""Operators for OVHcloud AI Endpoints: chat completions and embeddings.

Operators own the Airflow side (templated fields, XCom, logging); the hook owns the connection,
the client and the errors. Constructors only store arguments: no hook, client or connection is
created while a DAG file is parsed.

`execute()` is a short pipeline of small methods so a subclass (e.g. the DAG factory's steps) can
change one stage without copying the rest:

    build_request(context) -> dict      the keyword arguments of the hook call
    call_endpoint(request) -> dict      the hook call, returning the wire JSON as a dict
    log_usage(response)                 token counts, never the content
    result(response, context) -> Any    what is pushed to XCom (the whole response by default)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ovh_ai_dagfactory.compat import BaseOperator, Context
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook


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
        self.log_usage(response)
        return self.result(response, context)

    def build_request(self, context: Context) -> dict[str, Any]:
        raise NotImplementedError

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

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


__all__ = [
    "OVHCloudAIEndpointsBaseOperator",
    "OVHCloudAIEndpointsChatCompletionsOperator",
    "OVHCloudAIEndpointsEmbeddingOperator",
]

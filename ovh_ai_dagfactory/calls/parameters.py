"""The keyword arguments the hook hands to the openai SDK: set ones only (None is "the model's
default"), floats for embeddings, no streaming, and checked against the installed SDK before any
request is sent."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError

#: The chat request parameters the chat operators take as keyword arguments of their own (the seed's
#: signatures, each operator with its defaults): declared here once, and each operator's list of
#: the arguments that have no second place in `completion_kwargs` / `request_kwargs` derives from it.
#: tests/provider/test_request_parameters.py checks the signatures against it.
CHAT_PARAMETERS = ("temperature", "max_tokens", "top_p", "stop")


def check_parameters(create: Callable[..., Any], operation: str, method: str, params: dict[str, Any]) -> None:
    """Refuse, before any request, a parameter the installed SDK's `create` does not take: the SDK
    would raise a bare TypeError, which Airflow would retry although it can never succeed."""
    accepted = inspect.signature(create).parameters
    unknown = [name for name in params if name not in accepted]
    if not unknown:
        return
    import openai

    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, accepted, n=1)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise InvalidRequestError(
        f"Invalid request: {operation} got parameter(s) {', '.join(hints)} that the openai SDK "
        f"{openai.__version__} does not accept in {method}(). Parameters the SDK does not model go in "
        f"extra_body, e.g. extra_body={{'{unknown[0]}': ...}}; they are sent as they are."
    )


def chat_parameters(**kwargs: Any) -> dict[str, Any]:
    """The SDK's keyword arguments of a chat request: those not None; `stream` refused."""
    if kwargs.get("stream"):
        raise InvalidRequestError(
            "stream=True is not supported: chat_completion returns one whole response. "
            "Remove `stream` (the full answer is returned as a dict)."
        )
    return without_none(**kwargs)


def embedding_parameters(kwargs: dict[str, Any]) -> dict[str, Any]:
    # The SDK would ask for base64 and decode it; not every OpenAI-compatible server implements
    # base64, and floats are what the wire JSON (and the seed's response shape) shows.
    return without_none(**{"encoding_format": "float", **kwargs})


def json_schema_response_format(name: str, output_schema: Any) -> dict[str, Any]:
    """The `response_format` an `output_schema` is sent as: a strict `json_schema` named `name`
    (the chat operators name it after the task id)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(output_schema), "strict": True}}


def without_none(**params: Any) -> dict[str, Any]:
    """Parameters the caller set: a None is 'use the model default', so it is not sent at all."""
    return {key: value for key, value in params.items() if value is not None}


__all__ = [
    "CHAT_PARAMETERS",
    "chat_parameters",
    "check_parameters",
    "embedding_parameters",
    "json_schema_response_format",
    "without_none",
]

"""The one definition of an answer's result: a chat answer's text, an embedding answer's vectors.

The operators, the DAG factory's `steps.<id>.content` / `.embeddings` and the CLI's `run` all read
results from the response dict (the wire JSON) through these two functions, so that "an answer
without a result" means the same everywhere: `NoContentError`, never a None that Jinja would
render as the text "None" or a missing vector.

    chat_content(response) -> str                        choices[0].message.content
    embedding_vectors(response, expected=2) -> [[...]]  one vector per input, in input order
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

from ovh_ai_dagfactory.hooks.errors import NoContentError

_QUOTED = 200  # characters of a refusal quoted in a message
_NOT_PASSED_ON = (
    'The task fails instead of passing an empty answer (or the text "None") to the next tasks; not '
    "retried by task retries, since the same request usually gets the same kind of answer."
)


def chat_content(response: Mapping[str, Any], *, model: str | None = None, max_tokens: int | None = None) -> str:
    """The text of a chat answer: `choices[0].message.content`, as the model wrote it.

    Raises `NoContentError` (fatal: no task retries) naming what came back instead and the
    `finish_reason` when the first choice has no text: content null, empty or only whitespace, no
    choices, a choice without a message, tool calls only, a refusal.

    :param model: the model named in the message; default: the response's own `model`.
    :param max_tokens: the request's `max_tokens`, quoted when the answer was cut by it.
    """
    choices = response.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    message = choice.get("message") or {}
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str) and content.strip():
        return content
    finish_reason = choice.get("finish_reason")
    if not choices:
        returned, hint = "an empty 'choices' list", "The endpoint produced no answer at all."
    else:
        returned, hint = _why_no_content(message, content, finish_reason, max_tokens)
    raise NoContentError(
        f"No content: chat completion of model '{model or response.get('model')}' returned {returned} "
        f"(finish_reason={finish_reason!r}, response id {response.get('id')!r}). {hint} {_NOT_PASSED_ON}",
        finish_reason=finish_reason,
    )


def embedding_vectors(
    response: Mapping[str, Any], *, expected: int | None = None, model: str | None = None
) -> list[list[float]]:
    """The vectors of an embedding answer, one per input, in input order (sorted by `index`).

    Raises `NoContentError` unless every item of `data` holds a non-empty vector and the indexes
    are exactly 0 … n-1, with n = `expected` (the number of inputs) when given, else the number of
    items. A vector sent as base64 text (`encoding_format="base64"`) is decoded to floats, as the
    openai SDK does.

    :param model: the model named in the message; default: the response's own `model`.
    """
    data = response.get("data") or []
    items = [item if isinstance(item, Mapping) else {} for item in data]
    count = len(items) if expected is None else expected
    missing = [i for i, item in enumerate(items) if not item.get("embedding")]
    indexes = sorted({item.get("index", i) for i, item in enumerate(items)})
    if not items:
        returned = "an empty 'data' list" if "data" in response else "no 'data'"
    elif missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        returned = f"no vector in data[{missing[0]}]{more}"
    elif len(items) != count or indexes != list(range(count)):
        returned = f"{len(items)} vector(s) with indexes {indexes[:10]} for {count} input(s)"
    else:
        ordered = sorted(enumerate(items), key=lambda pair: pair[1].get("index", pair[0]))
        try:
            return [_floats(item["embedding"]) for _, item in ordered]
        except (ValueError, struct.error):  # binascii.Error is a ValueError
            returned = "a base64 vector that is not float32 data"
    raise NoContentError(
        f"No vectors: embedding of model '{model or response.get('model')}' returned {returned}; one vector "
        "per input was expected. The task fails instead of passing missing vectors to the next tasks; not "
        "retried by task retries. Check the model is an embedding model and the inputs are not empty."
    )


def _floats(vector: Any) -> list[float]:
    if isinstance(vector, str):  # little-endian float32, as OpenAI's API (and the SDK) define it
        raw = base64.b64decode(vector, validate=True)
        if len(raw) % 4:
            raise ValueError("not a whole number of float32 values")
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return list(vector)


def _why_no_content(message: Any, content: Any, finish_reason: Any, max_tokens: int | None) -> tuple[str, str]:
    """What a chat answer without text returned instead, and what to do about it."""
    if not isinstance(message, Mapping):
        message = {}
    if message.get("refusal"):
        refusal = " ".join(str(message["refusal"]).split())[:_QUOTED]
        return f"a refusal ({refusal!r})", "Rephrase the prompt or use another model."
    if message.get("tool_calls"):
        calls = [call for call in message["tool_calls"] if isinstance(call, Mapping)]
        names = [str((call.get("function") or {}).get("name")) for call in calls]
        return f"tool calls only ({', '.join(names)})", "This operator does not run tools: ask for a text answer."
    returned = "no message" if not message else "content null" if content is None else "empty content"
    if finish_reason == "length":
        return returned, (
            f"The model reached max_tokens ({max_tokens}) before writing its answer (reasoning "
            "models spend tokens thinking first): raise max_tokens."
        )
    if finish_reason == "content_filter":
        return returned, "The endpoint's content filter withheld the answer."
    return returned, "Check the prompt and the model's parameters."


__all__ = ["chat_content", "embedding_vectors"]

"""The one definition of an answer's result: a chat answer's text, an embedding answer's vectors.

The operators, the DAG factory's `steps.<id>.content` / `.embeddings` and the CLI's `run` all read
results from the response dict (the wire JSON) through these two functions, so that "an answer
without a result" means the same everywhere: `NoContentError`, never a None that Jinja would
render as the text "None" or a missing vector.

    chat_content(response) -> str                        choices[0].message.content
    chat_json(response, output_schema) -> Any            that content parsed as JSON, validated
    embedding_vectors(response, expected=2) -> [[...]]  one vector per input, in input order
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError, NoContentError, StructuredOutputError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

_QUOTED = 200  # characters of a refusal, or of a structured answer, quoted in a message
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


def chat_json(response: Mapping[str, Any], output_schema: Mapping[str, Any] | None = None) -> Any:
    """The text of a chat answer (`chat_content`) parsed as JSON and, when `output_schema` is given,
    validated against it (JSON Schema Draft 2020-12, as `output_schema` is sent in the request).

    Raises `NoContentError` as `chat_content` does; `StructuredOutputError` (transient: a model
    samples again, so the task's retries apply) when the text is not JSON or does not match the
    schema, naming the JSON path that failed (`$` for the whole answer), what the schema wanted and
    an excerpt of the answer (at most 200 characters; the hook has already redacted the token from
    the response); `InvalidRequestError` when `output_schema` is not a valid schema.
    """
    content = chat_content(response)
    validator = check_output_schema(output_schema) if output_schema is not None else None
    choices = response.get("choices") or []
    finish_reason = choices[0].get("finish_reason") if isinstance(choices[0], Mapping) else None
    where = f"the answer of model '{response.get('model')}' (response id {response.get('id')!r})"
    try:
        value = json.loads(content)
    except ValueError as error:  # json.JSONDecodeError, or a number too large to convert
        position = getattr(error, "pos", 0)
        reason = (
            f"{error.msg}: line {error.lineno} column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else str(error)
        )
        hint = (
            " The answer was cut by max_tokens (finish_reason='length'): raise max_tokens."
            if finish_reason == "length"
            else ""
        )
        raise StructuredOutputError(
            f"Structured output: {where} is not valid JSON at $ ({reason}); answer "
            f"({len(content)} chars) near the error: {_excerpt(content, position)!r}.{hint} {_SAMPLED_AGAIN}",
            json_path="$",
            finish_reason=finish_reason,
        ) from None
    if validator is None:
        return value
    from jsonschema.exceptions import best_match

    errors = list(validator.iter_errors(value))
    if not errors:
        return value
    worst = best_match(errors)
    wanted = json.dumps(worst.validator_value, ensure_ascii=False, default=str)
    wanted = wanted if len(wanted) <= 100 else wanted[:99] + "…"
    problem = " ".join(worst.message.split())
    problem = problem if len(problem) <= 160 else problem[:159] + "…"
    more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    raise StructuredOutputError(
        f"Structured output: {where} does not match output_schema at {worst.json_path}: {problem} (the "
        f"schema wants {worst.validator} {wanted}{more}); answer ({len(content)} chars): "
        f"{_excerpt(content, 0)!r}. {_SAMPLED_AGAIN}",
        json_path=worst.json_path,
        finish_reason=finish_reason,
    )


def item_error_message(error: BaseException) -> str:
    """The message of `error` as an item's row records it (chat at volume): without the sentence
    about what the task does next, which is the operator's, not the item's."""
    message = str(error)
    for advice in (_NOT_PASSED_ON, _SAMPLED_AGAIN):
        message = message.replace(f" {advice}", "")
    return message


def check_output_schema(output_schema: Any) -> Validator:
    """A Draft 2020-12 validator for `output_schema`, or `InvalidRequestError` (fatal) when it is
    not a mapping or not a valid JSON Schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(output_schema, Mapping):
        raise InvalidRequestError(
            f"Invalid request: output_schema must be a JSON Schema mapping, not {type(output_schema).__name__} "
            f"{str(output_schema)[:80]!r}."
        )
    try:
        Draft202012Validator.check_schema(output_schema)
    except SchemaError as error:
        path = "".join(f"[{part!r}]" for part in error.absolute_path) or " (the root)"
        raise InvalidRequestError(
            f"Invalid request: output_schema is not a valid JSON Schema (Draft 2020-12): at output_schema"
            f"{path}: {' '.join(error.message.split())[:200]}."
        ) from None
    return Draft202012Validator(output_schema)


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


_SAMPLED_AGAIN = "The task fails this try; its retries (if any) ask the model again."


def _excerpt(content: str, position: int) -> str:
    """At most `_QUOTED` characters of `content` on one line, from a little before `position`."""
    start = max(0, position - _QUOTED // 2)
    window = " ".join(content[start : start + 4 * _QUOTED].split())
    prefix, suffix = ("…" if start else ""), ("…" if start + 4 * _QUOTED < len(content) else "")
    if len(prefix) + len(window) + len(suffix) > _QUOTED:
        window, suffix = window[: _QUOTED - len(prefix) - 1], "…"
    return prefix + window + suffix


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


__all__ = ["chat_content", "chat_json", "check_output_schema", "embedding_vectors", "item_error_message"]

"""A 2xx answer turned into the wire-JSON dict the hook returns, or a clear error saying why not.

The openai SDK is lenient with a 2xx: a non-JSON body comes back as a `str` (HTML from a proxy),
broken JSON raises a bare `JSONDecodeError`, and a JSON object of any shape is accepted. So the
hook reads the body itself and checks the shape every caller relies on — the top-level `choices`
/ `data` list and the types of the fields that are present — before anything returns it. Whether
an answer carries a usable result (text, one vector per input) is `results.py`'s, applied by the
operators: a Python user of the hook may legitimately want a tool-calls-only answer.

The token is redacted from the returned dict (a server may echo it) and from every message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from ovh_ai_dagfactory.calls.errors import IncompatibleResponseError, UnexpectedResponseError
from ovh_ai_dagfactory.calls.redaction import redact, redact_json

_EXCERPT = 200  # characters of the body quoted in a message: enough to recognise a page, short to read


def wire_json(raw: Any, operation: str, secrets: Iterable[str]) -> dict[str, Any]:
    """The JSON object of `raw` (the SDK's raw response), shape-checked for `operation`, redacted."""
    secrets = [s for s in secrets if s]
    text = raw.text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        why = f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})" if text.strip() else "empty"
        raise _not_json(raw, operation, why, text, secrets) from None
    problem = _problem(data, operation)
    if problem is not None:
        raise _incompatible(raw, operation, problem, text, secrets)
    return redact_json(data, secrets, text)


def _problem(data: Any, operation: str) -> str | None:
    """What is wrong with `data` as an answer to `operation`, or None when its shape is right."""
    if not isinstance(data, dict):
        return f"the body is a JSON {_kind(data)}, not an object"
    check = _CHECKS.get(operation)
    problem = check(data) if check is not None else None
    if problem is None and not isinstance(data.get("usage"), (dict, type(None))):
        problem = f"'usage' is {_a(data['usage'])}, not an object"
    return problem


def _chat_problem(data: dict[str, Any]) -> str | None:
    choices = data.get("choices")
    if not isinstance(choices, list):
        return "no 'choices' list" if choices is None else f"'choices' is {_a(choices)}, not a list"
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            return f"choices[{i}] is {_a(choice)}, not an object"
        message = choice.get("message")
        if message is None:
            continue  # a choice without a message is the operator's "no content", not a shape error
        if not isinstance(message, dict):
            return f"choices[{i}].message is {_a(message)}, not an object"
        for name, types in (("content", str), ("refusal", str), ("tool_calls", list)):
            if not isinstance(message.get(name), (types, type(None))):
                return f"choices[{i}].message.{name} is {_a(message[name])}, not {_a(types())} or null"
        if not isinstance(choice.get("finish_reason"), (str, type(None))):
            return f"choices[{i}].finish_reason is {_a(choice['finish_reason'])}, not a string"
    return None


def _embeddings_problem(data: dict[str, Any]) -> str | None:
    items = data.get("data")
    if not isinstance(items, list):
        return "no 'data' list" if items is None else f"'data' is {_a(items)}, not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"data[{i}] is {_a(item)}, not an object"
        vector = item.get("embedding")
        # A list of numbers, or base64 text when the caller asked for encoding_format="base64".
        if isinstance(vector, list):
            if not all(type(x) in (float, int) for x in vector):
                return f"data[{i}].embedding holds something other than numbers"
        elif not isinstance(vector, (str, type(None))):  # missing: the operator's "no vectors"
            return f"data[{i}].embedding is {_a(vector)}, not a list of numbers"
        if not isinstance(item.get("index", 0), int) or isinstance(item.get("index"), bool):
            return f"data[{i}].index is {_a(item['index'])}, not an integer"
    return None


def _models_problem(data: dict[str, Any]) -> str | None:
    items = data.get("data")
    if not isinstance(items, list):
        return "no 'data' list" if items is None else f"'data' is {_a(items)}, not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return f"data[{i}] has no string 'id'"
    return None


_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "chat completion": _chat_problem,
    "embedding": _embeddings_problem,
    "list models": _models_problem,
}
_WHAT = {"chat completion": "a chat completion", "embedding": "an embeddings list", "list models": "a model list"}


# -- messages ------------------------------------------------------------------------------------


def _not_json(raw: Any, operation: str, why: str, text: str, secrets: list[str]) -> UnexpectedResponseError:
    where, attributes = _where(raw, operation, secrets)
    return UnexpectedResponseError(
        f"Unexpected response: {where} with a body that is {why}: {_excerpt(text, secrets)}. This is "
        "usually a proxy, gateway or maintenance page, or an answer cut short, not the API itself. "
        "Not retried by the client (it never retries a 2xx); the task's own Airflow retries, if it has "
        "any, will try again. If it persists, check the connection's base URL (the API root, e.g. /v1)."
        + _request_id(raw),
        **attributes,
    )


def _incompatible(raw: Any, operation: str, problem: str, text: str, secrets: list[str]) -> IncompatibleResponseError:
    where, attributes = _where(raw, operation, secrets)
    return IncompatibleResponseError(
        f"Unexpected response: {where} with JSON that is not {_WHAT.get(operation, 'the expected answer')} "
        f"({problem}): {_excerpt(text, secrets)}. Not retried, neither by the client nor by task retries: "
        "the server would answer the same way. Check that the connection's base URL points at an "
        "OpenAI-compatible API." + _request_id(raw),
        **attributes,
    )


def _where(raw: Any, operation: str, secrets: list[str]) -> tuple[str, dict[str, Any]]:
    url = redact(str(raw.url), secrets)
    content_type = raw.headers.get("content-type") or "no content type"
    attributes = {
        "operation": operation,
        "url": url,
        "http_status": raw.status_code,
        "content_type": content_type,
        "request_id": raw.headers.get("x-request-id"),
    }
    return f"{operation} on {url} answered HTTP {raw.status_code} ({content_type})", attributes


def _excerpt(text: str, secrets: list[str]) -> str:
    # Redact the whole text before cutting it: a cut could otherwise leave half a token behind.
    flat = " ".join(redact(text, secrets).split())
    if not flat:
        return "(empty)"
    return repr(flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…")


def _request_id(raw: Any) -> str:
    request_id = raw.headers.get("x-request-id")
    return f" (request id: {request_id})" if request_id else ""


def _kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def _a(value: Any) -> str:
    kind = _kind(value) if not isinstance(value, dict) else "object"
    return f"an {kind}" if kind[0] in "ao" else f"a {kind}"

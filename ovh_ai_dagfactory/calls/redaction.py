"""The connection's token replaced by `***` in everything the provider produces itself.

Airflow's secrets masker covers task logs; these functions cover what we return and raise: a
verbose server or proxy may echo the request headers back, in an error body or even in a 2xx
answer, and neither our messages nor the XComs may ever carry the token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_json(value: Any, secrets: Iterable[str], text: str | None = None) -> Any:
    """`value` (decoded JSON) with every secret replaced by `***` in every string, keys included.

    `text` is the serialized body when the caller has it. The walk is skipped when that text holds
    no secret and no escape sequence (an escaped secret would not show in the text): the common
    case, e.g. an embedding answer of thousands of floats, costs one substring search.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if text is None:
        text = json.dumps(value, ensure_ascii=False)
    if "\\" not in text and not any(secret in text for secret in secrets):
        return value
    return _redact_walk(value, secrets)


def _redact_walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {_redact_walk(k, secrets): _redact_walk(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_walk(item, secrets) for item in value]
    return value

"""The two JSONL files of a batch job: the requests we upload, and the results we read back.

    request_file(kind, model, inputs, params, custom_ids) -> bytes   one request line per input
    read_results(output, errors, custom_ids, ...) -> BatchResults     per input: a response or a failure
    chat_responses(results) -> [response | None]                      the chat operator's XCom shape
    embedding_response(results, model) -> {"object": "list", ...}     the embedding operator's shape

A line's `custom_id` is the input's index as text unless the caller gives its own ids; results are
mapped back through it, because the platform writes output lines in any order. A line counts as a
failure when it is in the error file, when its response status is not 2xx, when it carries no result
(a chat answer without text, an embedding without a vector: what `calls/results.py` refuses for the
synchronous operators too), or when no line came back for it at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ovh_ai_dagfactory.calls.errors import IncompatibleResponseError, InvalidRequestError, NoContentError
from ovh_ai_dagfactory.calls.redaction import redact, redact_json
from ovh_ai_dagfactory.calls.results import chat_content, embedding_vectors

#: The request kinds a batch runs, and the URL each request line names.
BATCH_URLS = {"chat": "/v1/chat/completions", "embedding": "/v1/embeddings"}
# SDK options that shape the HTTP call rather than the request body: a batch line has only a body.
_CALL_OPTIONS = ("extra_headers", "extra_query", "timeout", "stream")
_ERROR_EXCERPT = 300


@dataclass(frozen=True)
class LineFailure:
    index: int
    custom_id: str
    status_code: int | None  # the line's HTTP status; None when no line came back for the input
    error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchResults:
    responses: list[dict[str, Any] | None]  # by input index; None where the line failed
    failures: list[LineFailure] = field(default_factory=list)


def custom_ids_for(count: int, given: Sequence[Any] | None) -> list[str]:
    """The custom_id of each input: `given` (one unique non-empty string per input), else the index."""
    if given is None:
        return [str(index) for index in range(count)]
    ids = list(given)
    if len(ids) != count or not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
        raise InvalidRequestError(
            f"Invalid request: custom_ids must be one unique, non-empty string per input ({count} inputs); "
            f"got {len(ids)} value(s){' with duplicates' if len(set(map(str, ids))) != len(ids) else ''}."
        )
    return ids


def request_file(
    kind: str, model: str, inputs: Sequence[Any], params: Mapping[str, Any], custom_ids: Sequence[str]
) -> bytes:
    """The JSONL to upload: one `{"custom_id", "method", "url", "body"}` line per input.

    `params` are the other body parameters (`temperature`, `dimensions`, ...); the SDK's
    `extra_body` is merged into the body, as the SDK would send it; options about the HTTP call
    itself (`extra_headers`, `timeout`, ...) are refused: a batch line has no headers.
    """
    if kind not in BATCH_URLS:
        raise InvalidRequestError(f"Invalid request: kind must be one of {sorted(BATCH_URLS)}, not {kind!r}.")
    options = [name for name in _CALL_OPTIONS if name in params]
    if options:
        raise InvalidRequestError(
            f"Invalid request: {', '.join(options)} cannot be sent in a batch: each request line is a body "
            "only (no headers, no per-call timeout, no streaming). Remove it, or use the synchronous operators."
        )
    body_params = {key: value for key, value in params.items() if key != "extra_body" and value is not None}
    body_params.update(params.get("extra_body") or {})
    lines = []
    for index, (item, custom_id) in enumerate(zip(inputs, custom_ids, strict=True)):
        _check_input(kind, index, item)
        payload = {"model": model, "messages" if kind == "chat" else "input": item, **body_params}
        line = {"custom_id": custom_id, "method": "POST", "url": BATCH_URLS[kind], "body": payload}
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def _check_input(kind: str, index: int, item: Any) -> None:
    if kind == "chat":
        if isinstance(item, list) and item and all(isinstance(message, Mapping) for message in item):
            return
        wanted = 'a non-empty list of messages ({"role": ..., "content": ...})'
    else:
        if isinstance(item, str) and item:
            return
        wanted = "a non-empty string"
    raise InvalidRequestError(
        f"Invalid request: batch input [{index}] must be {wanted}, not {type(item).__name__} {str(item)[:80]!r}."
    )


def read_results(
    output_text: str | None,
    error_text: str | None,
    custom_ids: Sequence[str],
    *,
    kind: str,
    batch_id: str,
    secrets: Sequence[str] = (),
) -> BatchResults:
    """Map the output and error files' lines back to the inputs, whatever their order."""
    index_of = {custom_id: index for index, custom_id in enumerate(custom_ids)}
    responses: list[dict[str, Any] | None] = [None] * len(custom_ids)
    failed: dict[int, LineFailure] = {}
    for text in (output_text, error_text):
        for number, line in enumerate((text or "").splitlines(), start=1):
            if not line.strip():
                continue
            record = _record(line, number, batch_id, secrets)
            custom_id = str(record.get("custom_id"))
            index = index_of.get(custom_id)
            if index is None or responses[index] is not None or index in failed:
                continue  # not one of ours, or a line repeated: the first answer counts
            body, status, error = _outcome(record, kind, secrets)
            if error is None and body is not None:
                responses[index] = redact_json(body, [s for s in secrets if s])
            else:
                failed[index] = LineFailure(index, custom_id, status, error or "no response body")
    for index, custom_id in enumerate(custom_ids):
        if responses[index] is None and index not in failed:
            failed[index] = LineFailure(index, custom_id, None, "no line for this request in the output or error file")
    return BatchResults(responses, [failed[index] for index in sorted(failed)])


def _record(line: str, number: int, batch_id: str, secrets: Sequence[str]) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        excerpt = redact(line[:_ERROR_EXCERPT], [s for s in secrets if s])
        raise IncompatibleResponseError(
            f"Unexpected response: line {number} of batch {batch_id}'s result files is not a JSON object: "
            f"{excerpt!r}. The endpoint does not speak OpenAI's batch format."
        )
    return record


def _outcome(record: dict[str, Any], kind: str, secrets: Sequence[str]) -> tuple[Any, int | None, str | None]:
    """(response body, status, error message or None) of one result line."""
    response = record.get("response")
    response = response if isinstance(response, Mapping) else {}
    status = response.get("status_code")
    status = status if isinstance(status, int) else None
    body = response.get("body")
    error = record.get("error")
    if status is None and isinstance(error, Mapping) and str(error.get("code", "")).isdigit():
        status = int(error["code"])  # a line error may carry its HTTP status as its code
    if error or (status is not None and not 200 <= status < 300) or not isinstance(body, Mapping):
        detail = error or (body.get("error") if isinstance(body, Mapping) else None) or body or "no response"
        return None, status, _message(detail, secrets)
    try:
        if kind == "chat":
            chat_content(body)
        else:
            embedding_vectors(body, expected=1)
    except NoContentError as problem:
        return None, status, _message(str(problem), secrets)
    return dict(body), status, None


def _message(detail: Any, secrets: Sequence[str]) -> str:
    if isinstance(detail, Mapping) and isinstance(detail.get("message"), str):
        code = detail.get("code")
        text = f"{detail['message']} (code {code})" if code not in (None, "") else detail["message"]
    else:
        text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    text = " ".join(text.split())
    text = text if len(text) <= _ERROR_EXCERPT else text[: _ERROR_EXCERPT - 1] + "…"
    return redact(text, [s for s in secrets if s])


def chat_responses(results: BatchResults) -> list[dict[str, Any] | None]:
    """One chat completion response per input, in input order (None where the line failed)."""
    return list(results.responses)


def embedding_response(results: BatchResults, model: str) -> dict[str, Any]:
    """One embeddings response for all inputs, as the synchronous operator returns it: `data[i]` with
    `index` = the input's index (failed inputs are absent), `usage` summed over the lines."""
    data = []
    prompt_tokens = total_tokens = 0
    answered_model = None
    for index, body in enumerate(results.responses):
        if body is None:
            continue
        vector = sorted(body["data"], key=lambda item: item.get("index", 0))[0]["embedding"]
        data.append({"object": "embedding", "index": index, "embedding": vector})
        usage = body.get("usage") or {}
        prompt_tokens += int(usage.get("prompt_tokens") or 0)
        total_tokens += int(usage.get("total_tokens") or 0)
        answered_model = answered_model or body.get("model")
    return {
        "object": "list",
        "data": data,
        "model": answered_model or model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": total_tokens},
    }

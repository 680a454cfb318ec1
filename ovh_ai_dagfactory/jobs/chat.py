"""Chat at volume: the chat request kind (`ChatKind`, one request per item) and the job the hook
runs with it, `chat_items`: many items (a JSON Lines or .txt file, or a list), each rendered into
chat messages by the caller's `render(item, item_index)` (the operator renders its Jinja templates;
this module never imports Airflow's templating), sent with the runner's concurrency, pacing and
retries, their rows written to grouped parts in object storage (resumable) or returned whole.

An item's row:

    {"id": "doc-7", "item_index": 7, "content": "...",      # "json": {...} with an output_schema
     "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
     "finish_reason": "stop", "error": null}

`error` is null, or `{"type", "message", "http_status"}` when the item failed on its own: refused
with 400, 413 or 422, answered without content, or answered with JSON that does not match
`output_schema`. Such an item does not stop the job (`on_item_error="record"`, the default) unless
more than `max_failed_fraction` of the items done have failed (judged once
`CHAT_JOB_FAILED_FRACTION_MIN_ITEMS` are done, or at the end); with `on_item_error="fail"` the
first one fails the task. 401, 403, 404 (model or path) and a bad parameter are the job's, not an
item's: they stop it at once. 429, 5xx and timeouts are retried by the runner.

A failed item's row is a result like any other: a retried try keeps it (it is in a committed part)
and does not send the item again. To send the failed items again, write to another output.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ovh_ai_dagfactory.calls.errors import (
    InvalidRequestError,
    NoContentError,
    OVHCloudAIEndpointsError,
    OVHCloudAIEndpointsFatalError,
    StructuredOutputError,
)
from ovh_ai_dagfactory.calls.results import chat_content, chat_json, check_output_schema, item_error_message
from ovh_ai_dagfactory.jobs.batches import Batch
from ovh_ai_dagfactory.jobs.progress import CHAT_USAGE_KEYS, JobProgress
from ovh_ai_dagfactory.jobs.runner import BatchResult, Endpoint, run_job
from ovh_ai_dagfactory.jobs.storage import GroupedStoredJob, PartStore, fingerprint, fingerprint_file, read_records
from ovh_ai_dagfactory.provider_info import CHAT_JOB_FAILED_FRACTION_MIN_ITEMS, CHAT_JOB_ON_ITEM_ERROR_MODES

#: `render(item, item_index)`: the chat messages of one item.
Render = Callable[[Any, int], list[dict[str, Any]]]
_SIZE_SAMPLE = 20  # rows after which the size of the whole result is projected (the XCom guard)


class ItemFailedError(OVHCloudAIEndpointsFatalError):
    """`on_item_error="fail"`: an item failed on its own (see the module's docstring). Attributes:
    `item_index`, `item_id`, `item_error` (the row's `error`)."""


class TooManyItemsFailedError(OVHCloudAIEndpointsFatalError):
    """More than `max_failed_fraction` of the items done have failed. Attributes: `failed`, `done`,
    `item_error` (the first failed item's row `error`)."""


class ChatResultsTooLargeError(OVHCloudAIEndpointsFatalError):
    """The rows of a chat job without an output would be larger than `max_result_bytes` (the
    operator's `max_xcom_bytes`): they belong in object storage (`output_uri`)."""


class ChatKind:
    """The chat request kind (a `runner.RequestKind`): one item per request, its messages made by
    `render`; a refused or unusable answer becomes the item's row with its error."""

    what = "chat"

    def __init__(self, render: Render, output_schema: dict[str, Any] | None) -> None:
        self.render = render
        self.output_schema = output_schema

    def name(self, unit: Batch) -> str:
        return f"chat {unit.label(0)}"

    def request(self, unit: Batch) -> list[dict[str, Any]]:
        return self.render(unit.items[0], unit.start)

    def read(self, unit: Batch, response: dict[str, Any]) -> BatchResult:
        usage = {key: value for key, value in (response.get("usage") or {}).items() if isinstance(value, int)}
        choices = response.get("choices") or []
        finish_reason = choices[0].get("finish_reason") if choices and isinstance(choices[0], dict) else None
        try:
            answer = chat_content(response) if self.output_schema is None else chat_json(response, self.output_schema)
        except (NoContentError, StructuredOutputError) as error:
            return BatchResult(unit, [self.row(unit, None, usage, finish_reason, error)], usage, response.get("model"))
        return BatchResult(unit, [self.row(unit, answer, usage, finish_reason, None)], usage, response.get("model"))

    def refused(self, unit: Batch, error: OVHCloudAIEndpointsError, run: Callable[[Batch], BatchResult]) -> BatchResult:
        """400, 413, 422: the item's row records the refusal; the job goes on."""
        return BatchResult(unit, [self.row(unit, None, None, None, error)])

    def row(
        self, unit: Batch, answer: Any, usage: dict[str, int] | None, finish_reason: Any, error: Exception | None
    ) -> dict[str, Any]:
        return {
            "id": unit.ids[0] if unit.ids is not None else None,
            "item_index": unit.start,
            "json" if self.output_schema is not None else "content": answer,
            "usage": usage,
            "finish_reason": finish_reason,
            "error": None if error is None else _error(error),
        }


class ItemErrors:
    """The job's policy for failed items (`on_item_error`, `max_failed_fraction`), counted over
    the items done, those of parts kept from an earlier try included. Thread-safe."""

    def __init__(self, on_item_error: str, max_failed_fraction: float, progress: JobProgress) -> None:
        if on_item_error not in CHAT_JOB_ON_ITEM_ERROR_MODES:
            raise InvalidRequestError(
                f"Invalid request: on_item_error must be one of {', '.join(map(repr, CHAT_JOB_ON_ITEM_ERROR_MODES))}, "
                f"not {on_item_error!r}."
            )
        if (
            isinstance(max_failed_fraction, bool)
            or not isinstance(max_failed_fraction, (int, float))
            or not (0 <= max_failed_fraction <= 1)
        ):
            raise InvalidRequestError(
                f"Invalid request: max_failed_fraction must be a number from 0 to 1, not {max_failed_fraction!r}."
            )
        self.on_item_error = on_item_error
        self.max_failed_fraction = float(max_failed_fraction)
        self.progress = progress
        self.done = 0
        self.failed = 0
        self.first: dict[str, Any] | None = None  # the first failed row
        self._lock = threading.Lock()

    def kept(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows of a part an earlier try committed."""
        for row in rows:
            self._count(row)

    def check(self, row: dict[str, Any]) -> None:
        """Count `row`; raise when the policy says the job fails (before the row is kept, in mode
        "fail": a retried try sends that item again)."""
        if row["error"] is not None and self.on_item_error == "fail":
            raise ItemFailedError(
                f"Item failed: {_item(row)} of the chat job failed ({row['error']['message']}). on_item_error='fail' "
                "fails the task at the first failed item (the parts already complete are kept for a retry). Use "
                "on_item_error='record' to record failed items in their rows and go on.",
                item_index=row["item_index"],
                item_id=row["id"],
                item_error=row["error"],
            )
        with self._lock:
            self._count(row)
            over = self.done >= CHAT_JOB_FAILED_FRACTION_MIN_ITEMS and self._over()
        if over:
            raise self._too_many()

    def check_end(self) -> None:
        if self._over():
            raise self._too_many()

    def _count(self, row: dict[str, Any]) -> None:
        self.done += 1
        if row.get("error") is not None:
            self.failed += 1
            self.progress.item_failed()
            if self.first is None or row["item_index"] < self.first["item_index"]:
                self.first = row

    def _over(self) -> bool:
        return self.done > 0 and self.failed / self.done > self.max_failed_fraction

    def _too_many(self) -> TooManyItemsFailedError:
        first = self.first or {"item_index": None, "id": None, "error": {"message": ""}}
        return TooManyItemsFailedError(
            f"Too many failed items: {self.failed:,} of the {self.done:,} items done failed "
            f"({100 * self.failed / self.done:.1f}%), over max_failed_fraction={self.max_failed_fraction:g}. First: "
            f"{_item(first)}: {first['error']['message']} Fix the cause (the prompt, output_schema, max_tokens, the "
            "items), or raise max_failed_fraction (e.g. max_failed_fraction=0.2; 1 never fails) to accept more "
            "failed items, or set on_item_error='fail' to stop at the first one. Each failed item's row holds its "
            "error.",
            failed=self.failed,
            done=self.done,
            item_error=first["error"],
        )


def chat_items(
    endpoint: Endpoint,
    model: str,
    *,
    items: Iterable[Any] | None,
    input_file: str | None,
    input_conn_id: str | None,
    id_field: str | None,
    render: Render,
    render_source: Any,
    output: str | None,
    output_conn_id: str | None,
    part_size: int,
    max_concurrency: int,
    requests_per_minute: float | None,
    on_item_error: str,
    max_failed_fraction: float,
    max_result_bytes: int | None,
    output_schema: dict[str, Any] | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """See `OVHCloudAIEndpointsHook.chat_items`. `params`: the request's other parameters (the
    `response_format` of `output_schema` included), checked by the hook's sender."""
    started = time.monotonic()
    if (items is None) == (input_file is None):
        raise InvalidRequestError("Invalid request: give either `items` (a list) or `input_file` (a URI), not both.")
    if isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < 1:
        raise InvalidRequestError(f"Invalid request: part_size must be a whole number ≥ 1, not {part_size!r}.")
    if output_schema is not None:
        check_output_schema(output_schema)
    inline = list(items) if items is not None else None

    def records() -> Iterator[Any]:
        return iter(inline) if inline is not None else read_records(input_file or "", conn_id=input_conn_id)

    if input_file is not None:
        total, digest = fingerprint_file(input_file, conn_id=input_conn_id)
    else:
        total, digest = fingerprint((None, item) for item in records())
    progress = JobProgress(
        total, endpoint.log, title="Chat", noun="items", usage_keys=CHAT_USAGE_KEYS, counts_failures=True
    )
    policy = ItemErrors(on_item_error, max_failed_fraction, progress)
    kind = ChatKind(render, output_schema)
    units = (
        Batch(index, index, [item], [item.get(id_field) if id_field and isinstance(item, dict) else None])
        for index, item in enumerate(records())
    )

    def run(units: Iterable[Batch], on_result: Callable[[BatchResult], None]) -> None:
        run_job(
            endpoint,
            kind,
            units,
            on_result,
            progress=progress,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            describe=f"Chat job of {total:,} items with model {model}: one request per item",
        )

    answered: list[str] = []
    if output is None:
        rows: dict[int, dict[str, Any]] = {}
        size = _ResultSize(total, max_result_bytes)

        def keep(result: BatchResult) -> None:
            row = result.values[0]
            policy.check(row)
            size.add(row)
            rows[row["item_index"]] = row
            if not answered and result.model:
                answered.append(result.model)

        run(units, keep)
        policy.check_end()
        data = [rows[index] for index in sorted(rows)]
        return {
            "object": "list",
            "data": data,
            "model": answered[0] if answered else model,
            "usage": progress.usage(),
            "failed": policy.failed,
        }

    store = PartStore(output, output_conn_id, kind="chat")
    stored = GroupedStoredJob(store, progress, started=started, part_size=part_size, total=total)
    stored.start(
        {
            "model": model,
            "input": input_file if input_file is not None else "items (a list)",
            "input_sha256": digest,
            "count": total,
            "id_field": id_field,
            "part_size": part_size,
            "messages_sha256": _sha256(render_source),
            "parameters_sha256": _sha256(params),
        }
    )
    for part in sorted(stored.written):
        policy.kept(store.read_part(part))
    stored.log_resume()

    def write(result: BatchResult) -> None:
        row = result.values[0]
        policy.check(row)
        stored.write(result.batch.number, [row])
        if not answered and result.model:
            answered.append(result.model)

    run(stored.pending(units), write)
    stored.flush()
    policy.check_end()
    return stored.manifest(answered[0] if answered else model, failed=policy.failed)


class _ResultSize:
    """The XCom guard of a job without an output: `ChatResultsTooLargeError` once the rows are
    over `limit` bytes as JSON, or once the first `_SIZE_SAMPLE` rows project them over it (before
    the rest of the job is paid for)."""

    def __init__(self, total: int, limit: int | None) -> None:
        self.total = total
        self.limit = limit
        self.rows = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, row: dict[str, Any]) -> None:
        if self.limit is None:
            return
        with self._lock:
            self.rows += 1
            self.bytes += len(json.dumps(row, default=str)) + 2
            projected = self.bytes / self.rows * self.total if self.rows >= min(_SIZE_SAMPLE, self.total) else 0
            if self.bytes <= self.limit and projected <= self.limit:
                return
        raise ChatResultsTooLargeError(
            f"Chat results too large for XCom: the rows of {self.total:,} items are about "
            f"{_size(max(self.bytes, projected))} as JSON (from the first {self.rows:,}), over the limit of "
            f"{_size(self.limit)} (max_xcom_bytes). Set `output_uri` to a directory URI (e.g. "
            "output_uri='s3://bucket/answers/' or 'file:///data/answers/'): the rows are written there in parts and "
            "XCom gets a small manifest. Or raise max_xcom_bytes if your XCom backend stores large values outside "
            "the metadata DB."
        )


def _size(count: float) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 100_000 else f"{count:,.0f} bytes"


def _error(error: Exception) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": item_error_message(error),
        "http_status": getattr(error, "http_status", None),
    }


def _item(row: dict[str, Any]) -> str:
    return f"item {row['item_index']}" + (f" (id {row['id']!r})" if row.get("id") is not None else "")


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


__all__ = [
    "ChatKind",
    "ChatResultsTooLargeError",
    "ItemErrors",
    "ItemFailedError",
    "Render",
    "TooManyItemsFailedError",
    "chat_items",
]

"""Embedding jobs: the embedding request kind (`EmbeddingKind`) and the two jobs the hook runs
with it, `embed_texts` (the vectors gathered into one response, in input order) and
`embed_to_storage` (the vectors written to parts in object storage, resumable). An input of one
request is the hook's own (`one_request_or_texts` says which): it is sent by `create_embedding`.

The kind: a unit is a batch of texts (`batches.split_batches`), sent as one request whose `input`
is its texts; its result is their vectors, checked one per text (`calls/results.embedding_vectors`);
a batch refused with 400, 413 or 422 is split in two and each half sent again, down to the text the
endpoint refuses alone (`TextRefusedError`, naming its index and id): the server's message says
what is wrong, not which of the 64 texts. That costs log2(batch_size) requests, once. Its rows in
storage are `{"index", "id", "text_sha256", "embedding"}`.

The response of a job of several requests has the shape of one `create_embedding` answer:
`{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}, ...],
"model": ..., "usage": {"prompt_tokens": ..., "total_tokens": ...}}`, `index` counting across
batches and `usage` summed, so every reader of today's response (`results.embedding_vectors`,
`steps.<id>.embeddings`) reads it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from ovh_ai_dagfactory.calls.errors import (
    InvalidRequestError,
    OVHCloudAIEndpointsError,
    OVHCloudAIEndpointsFatalError,
)
from ovh_ai_dagfactory.calls.results import embedding_vectors
from ovh_ai_dagfactory.jobs.batches import Batch, check_batch_settings, envelope_bytes, split_batches, text_bytes
from ovh_ai_dagfactory.jobs.progress import JobProgress
from ovh_ai_dagfactory.jobs.runner import BatchResult, Endpoint, run_job
from ovh_ai_dagfactory.jobs.storage import PartStore, StoredJob, fingerprint, fingerprint_file, read_texts

_ITEM_OVERHEAD = 48  # bytes of '{"object": "embedding", "index": 12345, "embedding": }, ' around a vector


class TextRefusedError(OVHCloudAIEndpointsFatalError):
    """The endpoint refuses one text of an embedding input on its own (400/413/422), most often a
    text longer than the model's context. Attributes: `text_index` (global), `text_id` (or None)."""

    text_index: int | None = None
    text_id: Any = None


class EmbeddingsTooLargeError(OVHCloudAIEndpointsFatalError):
    """The vectors of an embedding job would be larger than `max_result_bytes` (the operator's
    `max_xcom_bytes`): they belong in object storage (`output`), not in one XCom row. Raised after
    the first batch, from its vectors' size, before the rest of the job is paid for."""


class EmbeddingKind:
    """The embedding request kind (a `runner.RequestKind`): a batch of texts per request."""

    what = "embedding"

    def name(self, unit: Batch) -> str:
        return f"embedding {unit.describe('texts')}"

    def request(self, unit: Batch) -> list[str]:
        return unit.texts

    def read(self, unit: Batch, response: dict[str, Any]) -> BatchResult:
        vectors = embedding_vectors(response, expected=len(unit.texts))
        usage = response.get("usage") or {}
        return BatchResult(unit, vectors, {k: v for k, v in usage.items() if isinstance(v, int)}, response.get("model"))

    def refused(self, unit: Batch, error: OVHCloudAIEndpointsError, run: Callable[[Batch], BatchResult]) -> BatchResult:
        """Halves, each sent again, down to the text refused alone (`TextRefusedError`)."""
        if len(unit.texts) == 1:
            raise _text_refused(error, unit) from None
        middle = len(unit.texts) // 2
        return BatchResult.joined(unit, [run(unit.part(0, middle)), run(unit.part(middle, len(unit.texts)))])

    @staticmethod
    def rows(result: BatchResult) -> list[dict[str, Any]]:
        """The lines of a part: `{"index", "id", "text_sha256", "embedding"}` per text."""
        batch = result.batch
        return [
            {
                "index": batch.start + offset,
                "id": batch.ids[offset] if batch.ids is not None else None,
                "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "embedding": vector,
            }
            for offset, (text, vector) in enumerate(zip(batch.texts, result.values, strict=True))
        ]


EMBEDDING = EmbeddingKind()


@dataclass(frozen=True)
class OneRequest:
    """An embedding input that is one request, sent as `create_embedding` sends it (the SDK's
    retries, no batching): what the hook does with it. `count`: the inputs in it."""

    input: str | list[Any]
    count: int


def one_request_or_texts(
    model: str,
    texts: str | Iterable[str],
    params: dict[str, Any],
    *,
    batch_size: int,
    max_request_bytes: int,
) -> OneRequest | list[Any]:
    """`texts` as one request when it is one (one text, a list of token ids, or at most
    `batch_size` texts under `max_request_bytes`), else as the list of texts to run as a job
    (`embed_texts`). A lazy input is read here, once."""
    check_batch_settings(batch_size, max_request_bytes)
    if isinstance(texts, str) or _is_token_ids(texts):
        return OneRequest(texts, 1)  # a list of token ids is one input, as in OpenAI's API
    texts = list(texts)
    if len(texts) <= batch_size and _fits(texts, max_request_bytes - envelope_bytes(model, params)):
        return OneRequest(texts, len(texts))
    return texts


def check_response_size(response: dict[str, Any], count: int, limit: int | None) -> None:
    """`EmbeddingsTooLargeError` when the `count` vectors of `response` exceed `limit` bytes."""
    _check_result_size(_vectors(response), count, limit)


def embed_texts(
    endpoint: Endpoint,
    model: str,
    texts: list[Any],
    *,
    batch_size: int,
    max_concurrency: int,
    requests_per_minute: float | None,
    max_request_bytes: int,
    max_result_bytes: int | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """`texts` as a job of several requests (`one_request_or_texts` said they are not one); see
    `OVHCloudAIEndpointsHook.embed_texts`."""
    check_batch_settings(batch_size, max_request_bytes)
    envelope = envelope_bytes(model, params)
    results: dict[int, BatchResult] = {}
    lock = threading.Lock()

    def keep(result: BatchResult) -> None:
        with lock:
            first = not results
            results[result.batch.number] = result
        if first:  # before the rest of the job is paid for
            _check_result_size(result.values, len(texts), max_result_bytes)

    batches = split_batches(
        ((None, text) for text in texts),
        batch_size=batch_size,
        max_request_bytes=max_request_bytes,
        envelope=envelope,
    )
    progress = _run(
        endpoint,
        model,
        batches,
        keep,
        _progress(len(texts), endpoint),
        batch_size=batch_size,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
    )
    data = [
        {"object": "embedding", "index": results[number].batch.start + offset, "embedding": vector}
        for number in sorted(results)
        for offset, vector in enumerate(results[number].values)
    ]
    answered = next((r.model for r in results.values() if r.model), None)
    return {"object": "list", "data": data, "model": answered or model, "usage": progress.usage()}


def embed_to_storage(
    endpoint: Endpoint,
    model: str,
    *,
    output: str,
    output_conn_id: str | None,
    input: str | list[str] | None,  # noqa: A002
    input_file: str | None,
    text_field: str,
    id_field: str | None,
    input_conn_id: str | None,
    batch_size: int,
    max_concurrency: int,
    requests_per_minute: float | None,
    max_request_bytes: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """See `OVHCloudAIEndpointsHook.embed_to_storage`."""
    check_batch_settings(batch_size, max_request_bytes)
    if (input is None) == (input_file is None):
        raise InvalidRequestError("Invalid request: give either `input` (texts) or `input_file` (a URI), not both.")
    started = time.monotonic()

    def items() -> Iterator[tuple[Any, str]]:
        if input_file is not None:
            return read_texts(input_file, text_field=text_field, id_field=id_field, conn_id=input_conn_id)
        return ((None, text) for text in ([input] if isinstance(input, str) else input or []))

    # A first read counts the texts (progress, ETA) and fingerprints them (resume); memory stays flat.
    if input_file is not None:
        total, digest = fingerprint_file(input_file, conn_id=input_conn_id)
    else:
        total, digest = fingerprint(items())
    store = PartStore(output, output_conn_id, kind="embedding")
    job = {
        "model": model,
        "input": input_file if input_file is not None else "input (a list of texts)",
        "input_sha256": digest,
        "count": total,
        "text_field": text_field if input_file is not None else None,
        "id_field": id_field if input_file is not None else None,
        "batch_size": batch_size,
        "max_request_bytes": max_request_bytes,
        "parameters_sha256": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest(),
    }
    stored = StoredJob(store, _progress(total, endpoint), started=started)
    stored.start(job)
    dimensions: list[int] = []
    answered: list[str] = []

    def write(result: BatchResult) -> None:
        stored.write(result.batch.number, EMBEDDING.rows(result))
        if not dimensions and result.values:
            dimensions.append(len(result.values[0]))
        if not answered and result.model:
            answered.append(result.model)

    batches = split_batches(
        items(), batch_size=batch_size, max_request_bytes=max_request_bytes, envelope=envelope_bytes(model, params)
    )
    stored.log_resume()
    _run(
        endpoint,
        model,
        stored.pending(batches),
        write,
        stored.progress,
        batch_size=batch_size,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
    )
    if not dimensions and (first := store.first_row(stored.written)):  # every part from an earlier try
        dimensions.append(len(first["embedding"]))
    return stored.manifest(answered[0] if answered else model, dimensions=dimensions[0] if dimensions else None)


def _progress(total: int | None, endpoint: Endpoint) -> JobProgress:
    return JobProgress(total, endpoint.log, title="Embedding", noun="texts")


def _run(
    endpoint: Endpoint,
    model: str,
    batches: Iterable[Batch],
    on_result: Callable[[BatchResult], None],
    progress: JobProgress,
    *,
    batch_size: int,
    max_concurrency: int,
    requests_per_minute: float | None,
) -> JobProgress:
    total = progress.total
    return run_job(
        endpoint,
        EMBEDDING,
        batches,
        on_result,
        progress=progress,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
        describe=f"Embedding {f'{total:,}' if total is not None else 'the'} texts with model {model}: "
        f"batches of at most {batch_size} texts",
    )


def _text_refused(error: OVHCloudAIEndpointsError, batch: Batch) -> TextRefusedError:
    text = batch.texts[0]
    return TextRefusedError(
        f"Text refused: {batch.label(0, 'text')} of the embedding input ({len(text):,} characters, "
        f"{len(text.split()):,} words) is refused by the endpoint when sent alone; most often it is longer "
        "than the model's context: shorten or split it (if the server's words below are about a parameter "
        f"instead, every text is refused: fix that parameter). {error}",
        text_index=batch.start,
        text_id=batch.ids[0] if batch.ids is not None else None,
        http_status=error.http_status,
        request_id=error.request_id,
    )


def _check_result_size(vectors: list[Any], count: int, limit: int | None) -> None:
    """`EmbeddingsTooLargeError` when `count` vectors like the first of `vectors` exceed `limit` bytes."""
    if limit is None or not vectors or vectors[0] is None:
        return
    estimate = (len(json.dumps(vectors[0])) + _ITEM_OVERHEAD) * count
    if estimate > limit:
        raise EmbeddingsTooLargeError(
            f"Embeddings too large for XCom: {count:,} vectors of {len(vectors[0]):,} dimensions are about "
            f"{estimate / 1e6:,.1f} MB as JSON, over the limit of {limit / 1e6:,.1f} MB (max_xcom_bytes). Set "
            "`output` to a directory URI (e.g. output='s3://bucket/vectors/' or 'file:///data/vectors/'): the "
            "vectors are written there in parts and XCom gets a small manifest. Or raise max_xcom_bytes if your "
            "XCom backend stores large values outside the metadata DB."
        )


def _vectors(response: dict[str, Any]) -> list[Any]:
    return [item.get("embedding") if isinstance(item, dict) else None for item in response.get("data") or []]


def _fits(texts: list[str], budget: int) -> bool:
    total = 0
    for text in texts:
        if not isinstance(text, str):
            return True  # one request, as before: the server (or the SDK) says what is wrong
        total += text_bytes(text)
        if total > budget:
            return False
    return True


def _is_token_ids(value: Any) -> TypeGuard[list[int]]:
    # A list of token ids is one input, as in OpenAI's API.
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value)


__all__ = [
    "EMBEDDING",
    "EmbeddingKind",
    "EmbeddingsTooLargeError",
    "OneRequest",
    "TextRefusedError",
    "check_response_size",
    "embed_texts",
    "embed_to_storage",
    "one_request_or_texts",
]

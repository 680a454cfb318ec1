"""Embedding jobs as the hook runs them: texts split into batches (`batches.py`), run
concurrently (`runner.py`), and the vectors gathered into one response in input order.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.jobs.batches import (
    Batch,
    check_batch_settings,
    envelope_bytes,
    split_batches,
    text_bytes,
)
from ovh_ai_dagfactory.jobs.pacing import RequestPacer
from ovh_ai_dagfactory.jobs.progress import EmbeddingProgress
from ovh_ai_dagfactory.jobs.retries import RetryPolicy
from ovh_ai_dagfactory.jobs.runner import BatchResult, EmbeddingsTooLargeError, Endpoint, run_batches
from ovh_ai_dagfactory.jobs.storage import (
    PART_FORMAT,
    PartStore,
    fingerprint,
    fingerprint_file,
    read_texts,
)

_ITEM_OVERHEAD = 48  # bytes of '{"object": "embedding", "index": 12345, "embedding": }, ' around a vector


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
            _check_result_size(result.vectors, len(texts), max_result_bytes)

    batches = split_batches(
        ((None, text) for text in texts),
        batch_size=batch_size,
        max_request_bytes=max_request_bytes,
        envelope=envelope,
    )
    progress = run_job(
        endpoint,
        model,
        batches,
        keep,
        total=len(texts),
        batch_size=batch_size,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
    )
    data = [
        {"object": "embedding", "index": results[number].batch.start + offset, "embedding": vector}
        for number in sorted(results)
        for offset, vector in enumerate(results[number].vectors)
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
    store = PartStore(output, output_conn_id)
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
    written = store.start(job)
    progress = EmbeddingProgress(total, endpoint.log)
    numbers: list[int] = []
    counted = [0]  # texts read; the manifest's count (the first read only counted lines)
    dimensions: list[int] = []
    answered: list[str] = []

    def pending() -> Iterator[Batch]:
        # Read by the workers, one at a time (`run_batches` holds a lock around each batch).
        envelope = envelope_bytes(model, params)
        for batch in split_batches(
            items(), batch_size=batch_size, max_request_bytes=max_request_bytes, envelope=envelope
        ):
            numbers.append(batch.number)
            counted[0] += len(batch.texts)
            if batch.number in written:
                progress.skipped(len(batch.texts))  # written by an earlier try: not paid twice
                continue
            yield batch

    def write(result: BatchResult) -> None:
        store.write_part(result.batch, result.vectors)
        if not dimensions and result.vectors:
            dimensions.append(len(result.vectors[0]))
        if not answered and result.model:
            answered.append(result.model)

    if written:
        endpoint.log.info("Resuming: %s parts already in %s are kept", f"{len(written):,}", output)
    run_job(
        endpoint,
        model,
        pending(),
        write,
        total=total,
        batch_size=batch_size,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
        progress=progress,
    )
    manifest = {
        "output": output,
        "format": PART_FORMAT,
        "parts": [store.part_name(number) for number in numbers],
        "count": counted[0],
        "dimensions": dimensions[0] if dimensions else store.dimensions(written),
        "model": answered[0] if answered else model,
        "usage": progress.usage(),
        "duration_seconds": round(time.monotonic() - started, 3),
        "resumed_parts": len(written & set(numbers)),
        "requests": progress.requests,
        "retries": progress.retries,
        "rate_limited": progress.rate_limited,
    }
    store.write_manifest(manifest)
    return manifest


def run_job(
    endpoint: Endpoint,
    model: str,
    batches: Iterable[Any],
    on_result: Any,
    *,
    total: int | None,
    batch_size: int,
    max_concurrency: int,
    requests_per_minute: float | None,
    progress: EmbeddingProgress | None = None,
) -> EmbeddingProgress:
    """Run `batches` through `endpoint`; returns the job's progress (its counters)."""
    send = endpoint.sender()
    policy = RetryPolicy(max_retries=endpoint.max_retries())
    progress = progress or EmbeddingProgress(total, endpoint.log)
    endpoint.log.info(
        "Embedding %s texts with model %s: batches of at most %s texts, %s in flight, %s",
        f"{total:,}" if total is not None else "the",
        model,
        batch_size,
        max_concurrency,
        f"paced to {requests_per_minute:g} requests/min" if requests_per_minute else "no pacing",
    )
    run_batches(
        batches,
        send,
        on_result,
        pacer=RequestPacer(requests_per_minute),
        progress=progress,
        max_concurrency=max_concurrency,
        policy=policy,
    )
    progress.log_final()
    return progress


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


__all__ = ["embed_texts", "embed_to_storage", "run_job"]

"""Running the batches of an embedding job: a bounded number of requests in flight, paced, paused
together on 429, each batch retried on its own, and a refused batch narrowed down to its text.

Threads, not the SDK's AsyncOpenAI: the work is waiting on sockets (the GIL is released) with a
handful of requests in flight, so threads cost nothing an event loop would save; they reuse the
hook's own client and its one request/parse/error path (the same code answers `create_embedding`);
and `execute()` may run where an event loop is already running (a notebook, an async worker), where
`asyncio.run()` refuses to start. Parsing answers holds the GIL either way.

Retries: the requests of a job are sent with the SDK's retries off (`max_retries=0`) and retried
by `retries.send_paced`: a 429 pauses every worker for the server's Retry-After, a 5xx,
408, 409, timeout, dropped connection or non-JSON 2xx retries that batch alone, a fatal error (401,
404, a bad parameter) stops the job at once.

A batch refused with 400, 413 or 422 is split in two and each half sent again, down to the text the
endpoint refuses alone (`TextRefusedError`, naming its index and id): the server's message says
what is wrong, not which of the 64 texts. That costs log2(batch_size) requests, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ovh_ai_dagfactory.calls.errors import (
    BadRequestError,
    OVHCloudAIEndpointsError,
    OVHCloudAIEndpointsFatalError,
    RequestRejectedError,
    UnprocessableEntityError,
)
from ovh_ai_dagfactory.calls.results import embedding_vectors
from ovh_ai_dagfactory.jobs.batches import Batch
from ovh_ai_dagfactory.jobs.pacing import RequestPacer
from ovh_ai_dagfactory.jobs.progress import EmbeddingProgress
from ovh_ai_dagfactory.jobs.retries import RetryPolicy, send_paced, with_context
from ovh_ai_dagfactory.provider_info import DEFAULT_EMBEDDING_CONCURRENCY

# Requests in flight; declared once, in provider_info (the pipeline reference shows it without Airflow).
DEFAULT_MAX_CONCURRENCY = DEFAULT_EMBEDDING_CONCURRENCY
_HEARTBEAT = 1.0  # seconds between two looks at the progress while batches are in flight


class TextRefusedError(OVHCloudAIEndpointsFatalError):
    """The endpoint refuses one text of an embedding input on its own (400/413/422), most often a
    text longer than the model's context. Attributes: `text_index` (global), `text_id` (or None)."""

    text_index: int | None = None
    text_id: Any = None


class EmbeddingsTooLargeError(OVHCloudAIEndpointsFatalError):
    """The vectors of an embedding job would be larger than `max_result_bytes` (the operator's
    `max_xcom_bytes`): they belong in object storage (`output`), not in one XCom row. Raised after
    the first batch, from its vectors' size, before the rest of the job is paid for."""


@dataclass
class BatchResult:
    batch: Batch
    vectors: list[list[float]]
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None


SendTexts = Callable[[list[str]], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    """The endpoint as a job sees it, handed over by whoever holds the connection (the hook):
    `jobs/` never imports `hooks/`. `sender()` and `max_retries()` are called once, when the job's
    requests are about to start, not before: the connection is read then, after the input.

    :param sender: returns the function that sends one request (a unit's input → the answer's wire
        JSON), with the SDK's retries off and failures raised as our errors (`calls/errors.py`).
    :param max_retries: returns the retries of one request: the connection's `max_retries`.
    :param log: where the job's lines go (the hook's logger).
    """

    sender: Callable[[], Callable[[Any], dict[str, Any]]]
    max_retries: Callable[[], int]
    log: Any


def run_batches(
    batches: Iterable[Batch],
    send: SendTexts,
    on_result: Callable[[BatchResult], None],
    *,
    pacer: RequestPacer,
    progress: EmbeddingProgress,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    policy: RetryPolicy | None = None,
) -> None:
    """Embed every batch with `send` (one request, no SDK retries, our errors) and hand each result
    to `on_result`, in the worker thread that made it (so writing a part overlaps with the other
    requests; `on_result` must be thread-safe). Results arrive in completion order.

    Workers (`max_concurrency` plus `spare_workers`) each take the next batch from `batches`
    themselves, under a lock, as soon as they are free: a lazy input stays lazy (one batch per
    worker is held), and a finished worker is back in the pacer's queue at once, not after a round
    trip through this thread (which, holding the GIL to read the input, made turns late). At most
    `max_concurrency` requests are in flight. This thread only logs the progress. The first error
    stops the job: no new request starts, and it is raised with the batch it happened in named.
    """
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a whole number ≥ 1, not {max_concurrency!r}")
    worker = _BatchWorker(send, pacer, progress, policy or RetryPolicy(), threading.Semaphore(max_concurrency))
    iterator = iter(batches)
    reading = threading.Lock()  # one reader of the input at a time

    def next_batch() -> Batch | None:
        with reading:
            if pacer.stop.is_set():
                return None
            return next(iterator, None)

    # Spares start once a first batch is through (or the job ends): a job that fails at its first
    # batch (a wrong parameter, the XCom size guard) has sent at most `max_concurrency` requests.
    first_through = threading.Event()

    def run_worker(spare: bool) -> None:
        try:
            if spare:
                first_through.wait()
            while (batch := next_batch()) is not None:
                result = worker.embed(batch)
                on_result(result)
                progress.batch_done(len(batch.texts), result.usage)
                first_through.set()
        except BaseException:
            pacer.stop.set()  # at once, not when this thread next looks: no other request starts
            raise
        finally:
            first_through.set()  # after stop is set: a spare woken here takes no batch

    spares = spare_workers(max_concurrency)
    with ThreadPoolExecutor(max_workers=max_concurrency + spares, thread_name_prefix="embedding") as pool:
        workers = [pool.submit(run_worker, n >= max_concurrency) for n in range(max_concurrency + spares)]
        try:
            pending = set(workers)
            while pending:
                done, pending = wait(pending, timeout=_HEARTBEAT, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # a batch's error (or the input's), raised here
                progress.paused_seconds = pacer.paused_seconds
                progress.maybe_log()
        except BaseException:
            pacer.stop.set()  # waiting workers give up, idle ones take no batch; requests on the wire finish
            first_through.set()
            raise
    progress.paused_seconds = pacer.paused_seconds


def spare_workers(max_concurrency: int) -> int:
    """Workers beyond `max_concurrency`: one per four in flight, at least one.

    A worker writing its part or reading its next batch has no request in flight; without spares,
    its slot of `max_concurrency` would sit idle meanwhile (and, paced, the pacer's turns it would
    have taken pass unused: they are not made up later). The spares hold the next batches ready;
    the requests in flight stay at most `max_concurrency` (a semaphore around each request)."""
    return max(1, max_concurrency // 4)


class _BatchWorker:
    def __init__(
        self,
        send: SendTexts,
        pacer: RequestPacer,
        progress: EmbeddingProgress,
        policy: RetryPolicy,
        in_flight: threading.Semaphore,
    ):
        self.send = send
        self.in_flight = in_flight
        self.pacer = pacer
        self.progress = progress
        self.policy = policy

    def embed(self, batch: Batch) -> BatchResult:
        """The vectors of `batch`, narrowing a refused batch down to the text refused."""
        try:
            response = self._send(batch)
        except (BadRequestError, UnprocessableEntityError, RequestRejectedError) as error:
            if not _is_refusal(error):
                raise
            if len(batch.texts) == 1:
                raise _text_refused(error, batch) from None
            middle = len(batch.texts) // 2
            left, right = self.embed(batch.part(0, middle)), self.embed(batch.part(middle, len(batch.texts)))
            usage = {key: left.usage.get(key, 0) + right.usage.get(key, 0) for key in {*left.usage, *right.usage}}
            return BatchResult(batch, left.vectors + right.vectors, usage, left.model or right.model)
        try:
            vectors = embedding_vectors(response, expected=len(batch.texts))
        except OVHCloudAIEndpointsError as error:
            raise with_context(error, f"embedding {batch.describe()}") from None
        usage = response.get("usage") or {}
        return BatchResult(
            batch, vectors, {k: v for k, v in usage.items() if isinstance(v, int)}, response.get("model")
        )

    def _send(self, batch: Batch) -> dict[str, Any]:
        # The slot is held from before the pacer's turn (a turn is only taken to be used) to the
        # answer, retries and their waits included: a failing batch keeps its place, as before.
        with self.in_flight:
            try:
                return self._send_with_retries(batch)
            except OVHCloudAIEndpointsError as error:
                if not _is_refusal(error):
                    # Before the slot is released: a worker waiting for it must not start a request.
                    self.pacer.stop.set()
                raise

    def _send_with_retries(self, batch: Batch) -> dict[str, Any]:
        return send_paced(
            lambda: self.send(batch.texts),
            self.pacer,
            self.policy,
            what=f"embedding {batch.describe()}",
            slower="lower requests_per_minute or max_concurrency",
            events=self.progress,
        )


def _is_refusal(error: OVHCloudAIEndpointsError) -> bool:
    # 400 and 422: a text the model cannot take; 413: a body too large. Other 4xx are not about texts.
    return isinstance(error, (BadRequestError, UnprocessableEntityError)) or error.http_status == 413


def _text_refused(error: OVHCloudAIEndpointsError, batch: Batch) -> TextRefusedError:
    text = batch.texts[0]
    return TextRefusedError(
        f"Text refused: {batch.text_label(0)} of the embedding input ({len(text):,} characters, "
        f"{len(text.split()):,} words) is refused by the endpoint when sent alone; most often it is longer "
        "than the model's context: shorten or split it (if the server's words below are about a parameter "
        f"instead, every text is refused: fix that parameter). {error}",
        text_index=batch.start,
        text_id=batch.ids[0] if batch.ids is not None else None,
        http_status=error.http_status,
        request_id=error.request_id,
    )


__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "BatchResult",
    "EmbeddingsTooLargeError",
    "Endpoint",
    "TextRefusedError",
    "run_batches",
    "spare_workers",
]

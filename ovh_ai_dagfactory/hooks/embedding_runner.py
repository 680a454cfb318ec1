"""Running the batches of an embedding job: a bounded number of requests in flight, paced, paused
together on 429, each batch retried on its own, and a refused batch narrowed down to its text.

Threads, not the SDK's AsyncOpenAI: the work is waiting on sockets (the GIL is released) with a
handful of requests in flight, so threads cost nothing an event loop would save; they reuse the
hook's own client and its one request/parse/error path (the same code answers `create_embedding`);
and `execute()` may run where an event loop is already running (a notebook, an async worker), where
`asyncio.run()` refuses to start. Parsing answers holds the GIL either way.

Retries: the requests of a job are sent with the SDK's retries off (`max_retries=0`) and retried
here. The SDK would wait out each 429 per request, invisible to the other workers (which would keep
sending into the limit, then resume all at once) and to the progress counters. Here a 429 pauses
every worker for the server's Retry-After (`request_pacing.py`), and a 5xx, 408, 409, timeout,
dropped connection or non-JSON 2xx retries that batch alone, `max_retries` times with exponential
backoff and jitter. A fatal error (401, 404, a bad parameter) stops the job at once.

A batch refused with 400, 413 or 422 is split in two and each half sent again, down to the text the
endpoint refuses alone (`TextRefusedError`, naming its index and id): the server's message says
what is wrong, not which of the 64 texts. That costs log2(batch_size) requests, once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ovh_ai_dagfactory.hooks.embedding_batches import Batch
from ovh_ai_dagfactory.hooks.embedding_progress import EmbeddingProgress
from ovh_ai_dagfactory.hooks.errors import (
    BadRequestError,
    EndpointConnectionError,
    IncompatibleResponseError,
    OVHCloudAIEndpointsError,
    OVHCloudAIEndpointsFatalError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
    UnexpectedResponseError,
    UnprocessableEntityError,
)
from ovh_ai_dagfactory.hooks.request_pacing import RequestPacer, Stopped
from ovh_ai_dagfactory.hooks.results import embedding_vectors

DEFAULT_MAX_CONCURRENCY = 4  # requests in flight
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
class RetryPolicy:
    """How a batch is retried. `max_retries`: tries after the first for 5xx, 408, 409, timeouts,
    connection errors and non-JSON 2xx. `max_rate_limit_waits`: 429s one batch waits out before the
    job fails. `max_retry_after`: a longer Retry-After fails the job at once (task retries, with
    their retry_delay, are the better wait)."""

    max_retries: int = 2
    max_rate_limit_waits: int = 10
    max_retry_after: float = 120.0
    backoff: float = 0.5  # seconds before the first retry; doubled each time, with jitter
    backoff_cap: float = 8.0


@dataclass
class BatchResult:
    batch: Batch
    vectors: list[list[float]]
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None


SendTexts = Callable[[list[str]], dict[str, Any]]


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

    At most `max_concurrency` batches are taken from `batches` at a time: a lazy input stays lazy.
    The first error stops the job: no new request starts, and it is raised with the batch it
    happened in named in its message.
    """
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a whole number ≥ 1, not {max_concurrency!r}")
    worker = _BatchWorker(send, pacer, progress, policy or RetryPolicy())

    def run_one(batch: Batch) -> None:
        result = worker.embed(batch)
        on_result(result)
        progress.batch_done(len(batch.texts), result.usage)

    iterator = iter(batches)
    pending: dict[Future[None], Batch] = {}
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="embedding") as pool:
        try:
            while True:
                while len(pending) < max_concurrency:
                    batch = next(iterator, None)
                    if batch is None:
                        break
                    pending[pool.submit(run_one, batch)] = batch
                if not pending:
                    break
                done, _ = wait(pending, timeout=_HEARTBEAT, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.pop(future)
                    future.result()  # the batch's error, raised here
                progress.paused_seconds = pacer.paused_seconds
                progress.maybe_log()
        except BaseException:
            pacer.stop.set()  # waiting workers give up; requests on the wire finish
            for future in pending:
                future.cancel()
            raise
    progress.paused_seconds = pacer.paused_seconds


class _BatchWorker:
    def __init__(self, send: SendTexts, pacer: RequestPacer, progress: EmbeddingProgress, policy: RetryPolicy):
        self.send = send
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
            raise with_context(error, batch.describe()) from None
        usage = response.get("usage") or {}
        return BatchResult(
            batch, vectors, {k: v for k, v in usage.items() if isinstance(v, int)}, response.get("model")
        )

    def _send(self, batch: Batch) -> dict[str, Any]:
        retries = waits = 0
        while True:
            self.pacer.wait_turn()
            self.progress.request_sent()
            try:
                response = self.send(batch.texts)
            except RateLimitError as error:
                self.progress.was_rate_limited()
                waits += 1
                asked = getattr(error, "retry_after", None)
                pause = asked if asked is not None else _backoff(waits, 1.0, 30.0)
                if waits > self.policy.max_rate_limit_waits or pause > self.policy.max_retry_after:
                    why = (
                        f"the server asked to wait {pause:g} s, over max_retry_after"
                        if pause > self.policy.max_retry_after
                        else f"still rate-limited after waiting out {waits - 1} 429s"
                    )
                    raise with_context(
                        error, f"{batch.describe()}: {why}; lower requests_per_minute or max_concurrency"
                    ) from None
                self.pacer.pause(pause)
                continue
            except IncompatibleResponseError as error:  # fatal, although an UnexpectedResponseError
                raise with_context(error, batch.describe()) from None
            except (ServerError, EndpointConnectionError, UnexpectedResponseError) as error:
                retries += 1
                if retries > self.policy.max_retries:
                    raise with_context(
                        error, f"{batch.describe()}, after {self.policy.max_retries} retries of that batch"
                    ) from None
                self.progress.retried()
                if self.pacer.stop.wait(_backoff(retries, self.policy.backoff, self.policy.backoff_cap)):
                    raise Stopped() from None
                continue
            except (BadRequestError, UnprocessableEntityError, RequestRejectedError):
                raise  # the caller narrows a refused batch down
            except OVHCloudAIEndpointsError as error:
                raise with_context(error, batch.describe()) from None
            self.pacer.succeeded()
            return response


def with_context(error: OVHCloudAIEndpointsError, context: str) -> OVHCloudAIEndpointsError:
    """`error` again, same class and attributes, its message followed by `[context]`."""
    attributes = {name: value for name, value in vars(error).items() if not name.startswith("_")}
    return type(error)(f"{error} [embedding {context}]", **attributes)


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


def _backoff(attempt: int, base: float, cap: float) -> float:
    # Full jitter in the upper half: workers retrying together spread out.
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "BatchResult",
    "EmbeddingsTooLargeError",
    "RetryPolicy",
    "TextRefusedError",
    "run_batches",
    "with_context",
]

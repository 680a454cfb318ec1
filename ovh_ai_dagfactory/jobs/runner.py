"""The job runner: the units of work of a job (`batches.Batch`) sent with a bounded number of
requests in flight, paced, paused together on 429, each unit retried on its own, and a refused unit
handed back to its request kind. One runner for every kind of request a job sends.

A request kind plugs in as an object with the four methods of `RequestKind` (and a `what`): the
request a unit is sent as (`request`), its answer read into a `BatchResult` (`read`: one value per
item, the usage, the model), what a unit refused with 400/413/422 becomes (`refused`: the
embedding kind halves the batch and sends each half again through the `run` it is given, down to the
one text refused; a kind that records refusals returns a result that says so), and how messages name
a unit (`name`). The kind's module (`embeddings.py`; a chat kind next to it) builds the units
(`batches.py`), hands the results to its storage (`storage.StoredJob`: parts of the rows it makes,
the manifest, resume) and calls `run_job`. Workers, spares, the in-flight semaphore, the pacer,
retries, stopping on the first fatal error and the progress heartbeat stay here, the same for all.

Threads, not the SDK's AsyncOpenAI: the work is waiting on sockets (the GIL is released) with a
handful of requests in flight, so threads cost nothing an event loop would save; they reuse the
hook's own client and its one request/parse/error path (the same code answers `create_embedding`);
and `execute()` may run where an event loop is already running (a notebook, an async worker), where
`asyncio.run()` refuses to start. Parsing answers holds the GIL either way.

Retries: the requests of a job are sent with the SDK's retries off (`max_retries=0`) and retried
by `retries.send_paced`: a 429 pauses every worker (for the server's Retry-After, probed when it is
whole seconds: `pacing.py`) and slows the pace, a 5xx, 408, 409,
timeout, dropped connection or non-JSON 2xx retries that unit alone, a fatal error (401, 404, a bad
parameter) stops the job at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from ovh_ai_dagfactory.calls.errors import (
    BadRequestError,
    OVHCloudAIEndpointsError,
    RequestRejectedError,
    UnprocessableEntityError,
)
from ovh_ai_dagfactory.jobs.batches import Batch
from ovh_ai_dagfactory.jobs.pacing import RequestPacer, Stopped
from ovh_ai_dagfactory.jobs.progress import JobProgress
from ovh_ai_dagfactory.jobs.retries import RetryPolicy, send_paced, with_context
from ovh_ai_dagfactory.provider_info import DEFAULT_EMBEDDING_CONCURRENCY

# Requests in flight; declared once, in provider_info (the pipeline reference shows it without Airflow).
DEFAULT_MAX_CONCURRENCY = DEFAULT_EMBEDDING_CONCURRENCY
_HEARTBEAT = 1.0  # seconds between two looks at the progress while units are in flight


@dataclass
class BatchResult:
    """What one unit gave: one value per item (an embedding batch: its vectors), in item order."""

    batch: Batch
    values: list[Any]
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None

    @classmethod
    def joined(cls, batch: Batch, parts: Sequence[BatchResult]) -> BatchResult:
        """The result of `batch` from the results of its parts, in order (usage summed)."""
        usage: dict[str, int] = {}
        for part in parts:
            for key, value in part.usage.items():
                usage[key] = usage.get(key, 0) + value
        model = next((part.model for part in parts if part.model), None)
        return cls(batch, [value for part in parts for value in part.values], usage, model)


Send = Callable[[Any], dict[str, Any]]


class RequestKind(Protocol):
    """How one kind of request runs in the runner (see the module's docstring)."""

    #: The kind in one word, e.g. "embedding": names the job's worker threads.
    what: str

    def name(self, unit: Batch) -> str:
        """How messages name the request of `unit`, e.g. "embedding batch 3 (texts 192-255)"."""
        ...

    def request(self, unit: Batch) -> Any:
        """What the endpoint's sender is given to send `unit` as one request (an embedding batch:
        its texts)."""
        ...

    def read(self, unit: Batch, response: dict[str, Any]) -> BatchResult:
        """The answer to `unit` as its result; raises our error when it has none (the runner adds
        `name(unit)` to its message)."""
        ...

    def refused(self, unit: Batch, error: OVHCloudAIEndpointsError, run: Callable[[Batch], BatchResult]) -> BatchResult:
        """What `unit` refused with 400, 413 or 422 (`error`) becomes: a result (the refusal
        recorded), the results of smaller units sent with `run` and `BatchResult.joined`, or an
        error raised (the job stops)."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """The endpoint as a job sees it, handed over by whoever holds the connection (the hook):
    `jobs/` never imports `hooks/`. `sender()` and `max_retries()` are called once, when the job's
    requests are about to start, not before: the connection is read then, after the input.

    :param sender: returns the function that sends one request (what `RequestKind.request` gives →
        the answer's wire JSON), with the SDK's retries off and failures raised as our errors.
    :param max_retries: returns the retries of one request: the connection's `max_retries`.
    :param log: where the job's lines go (the hook's logger).
    """

    sender: Callable[[], Send]
    max_retries: Callable[[], int]
    log: Any


def run_job(
    endpoint: Endpoint,
    kind: RequestKind,
    units: Iterable[Batch],
    on_result: Callable[[BatchResult], None],
    *,
    progress: JobProgress,
    max_concurrency: int,
    requests_per_minute: float | None,
    describe: str,
) -> JobProgress:
    """Run `units` of `kind` through `endpoint`, logging `describe` (what the job is) with the run's
    concurrency and pacing first and the progress at the end; returns `progress`."""
    send = endpoint.sender()
    policy = RetryPolicy(max_retries=endpoint.max_retries())
    endpoint.log.info(
        "%s, %s in flight, %s",
        describe,
        max_concurrency,
        f"paced to {requests_per_minute:g} requests/min" if requests_per_minute else "no pacing",
    )
    run_batches(
        units,
        kind,
        send,
        on_result,
        pacer=RequestPacer(requests_per_minute),
        progress=progress,
        max_concurrency=max_concurrency,
        policy=policy,
    )
    progress.log_final()
    return progress


def run_batches(
    batches: Iterable[Batch],
    kind: RequestKind,
    send: Send,
    on_result: Callable[[BatchResult], None],
    *,
    pacer: RequestPacer,
    progress: JobProgress,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    policy: RetryPolicy | None = None,
) -> None:
    """Send every unit of `batches` as `kind` says, with `send` (one request, no SDK retries, our
    errors), and hand each result to `on_result`, in the worker thread that made it (so writing a
    part overlaps with the other requests; `on_result` must be thread-safe). Results arrive in
    completion order.

    Workers (`max_concurrency` plus `spare_workers`) each take the next unit from `batches`
    themselves, under a lock, as soon as they are free: a lazy input stays lazy (one unit per
    worker is held), and a finished worker is back in the pacer's queue at once, not after a round
    trip through this thread (which, holding the GIL to read the input, made turns late). At most
    `max_concurrency` requests are in flight. This thread only logs the progress. The first error
    stops the job: no new request starts, and it is raised with the unit it happened in named.
    """
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a whole number ≥ 1, not {max_concurrency!r}")
    worker = _Worker(kind, send, pacer, progress, policy or RetryPolicy(), threading.Semaphore(max_concurrency))
    iterator = iter(batches)
    reading = threading.Lock()  # one reader of the input at a time

    def next_batch() -> Batch | None:
        with reading:
            if pacer.stop.is_set():
                return None
            return next(iterator, None)

    # Spares start once a first unit is through (or the job ends): a job that fails at its first
    # unit (a wrong parameter, the XCom size guard) has sent at most `max_concurrency` requests.
    first_through = threading.Event()

    def run_worker(spare: bool) -> None:
        try:
            if spare:
                first_through.wait()
            while (batch := next_batch()) is not None:
                result = worker.run(batch)
                on_result(result)
                progress.batch_done(len(batch.items), result.usage)
                first_through.set()
        except BaseException:
            pacer.stop.set()  # at once, not when this thread next looks: no other request starts
            raise
        finally:
            first_through.set()  # after stop is set: a spare woken here takes no unit

    spares = spare_workers(max_concurrency)
    with ThreadPoolExecutor(max_workers=max_concurrency + spares, thread_name_prefix=kind.what) as pool:
        workers = [pool.submit(run_worker, n >= max_concurrency) for n in range(max_concurrency + spares)]
        try:
            pending = set(workers)
            stopped: list[BaseException] = []
            while pending:
                done, pending = wait(pending, timeout=_HEARTBEAT, return_when=FIRST_EXCEPTION)
                # A unit's error (or the input's), raised here. A worker's `Stopped` is only the echo
                # of the error that stopped the job, which may end a moment later: waited for.
                for future in done:
                    error = future.exception()
                    if isinstance(error, Stopped):
                        stopped.append(error)
                    elif error is not None:
                        raise error
            if stopped:
                raise stopped[0]
                progress.paused_seconds = pacer.paused_seconds
                progress.maybe_log()
        except BaseException:
            pacer.stop.set()  # waiting workers give up, idle ones take no unit; requests on the wire finish
            first_through.set()
            raise
    progress.paused_seconds = pacer.paused_seconds


def spare_workers(max_concurrency: int) -> int:
    """Workers beyond `max_concurrency`: one per four in flight, at least one.

    A worker writing its part or reading its next unit has no request in flight; without spares,
    its slot of `max_concurrency` would sit idle meanwhile (and, paced, the pacer's turns it would
    have taken pass unused: they are not made up later). The spares hold the next units ready;
    the requests in flight stay at most `max_concurrency` (a semaphore around each request)."""
    return max(1, max_concurrency // 4)


def is_refusal(error: OVHCloudAIEndpointsError) -> bool:
    """400 and 422: an item the model cannot take; 413: a body too large. Other 4xx are not about
    the items, and stop the job."""
    return isinstance(error, (BadRequestError, UnprocessableEntityError)) or error.http_status == 413


class _Worker:
    def __init__(
        self,
        kind: RequestKind,
        send: Send,
        pacer: RequestPacer,
        progress: JobProgress,
        policy: RetryPolicy,
        in_flight: threading.Semaphore,
    ):
        self.kind = kind
        self.send = send
        self.in_flight = in_flight
        self.pacer = pacer
        self.progress = progress
        self.policy = policy

    def run(self, batch: Batch) -> BatchResult:
        """The result of `batch`; a refusal is its kind's to turn into one (or into an error)."""
        try:
            response = self._send(batch)
        except (BadRequestError, UnprocessableEntityError, RequestRejectedError) as error:
            if not is_refusal(error):
                raise
            return self.kind.refused(batch, error, self.run)
        try:
            return self.kind.read(batch, response)
        except OVHCloudAIEndpointsError as error:
            raise with_context(error, self.kind.name(batch)) from None

    def _send(self, batch: Batch) -> dict[str, Any]:
        # The slot is held from before the pacer's turn (a turn is only taken to be used) to the
        # answer, retries and their waits included: a failing unit keeps its place, as before.
        with self.in_flight:
            try:
                return self._send_with_retries(batch)
            except OVHCloudAIEndpointsError as error:
                if not is_refusal(error):
                    # Before the slot is released: a worker waiting for it must not start a request.
                    self.pacer.stop.set()
                raise

    def _send_with_retries(self, batch: Batch) -> dict[str, Any]:
        request = self.kind.request(batch)
        return send_paced(
            lambda: self.send(request),
            self.pacer,
            self.policy,
            what=self.kind.name(batch),
            slower="lower requests_per_minute or max_concurrency",
            events=self.progress,
        )


__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "BatchResult",
    "Endpoint",
    "RequestKind",
    "is_refusal",
    "run_batches",
    "run_job",
    "spare_workers",
]

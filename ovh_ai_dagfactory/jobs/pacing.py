"""Client-side pacing shared by the workers of one job: request starts spaced at a little under the
configured rate, a rate that adapts to the 429s the endpoint answers, and one shared pause on a 429.

Why spacing and not a token bucket with a burst: the endpoint counts requests per model over a
window we do not see; evenly spaced starts are the shape every limiter accepts (a rolling window,
a counter reset at each window boundary, a token bucket with or without burst: tests/stub_limits.py).

Why a little under the limit (`HEADROOM`): starts are spaced when the pacer gives a turn, but they
reach the endpoint after a thread wakes up, takes the GIL and writes to its socket, a few ms late
now and then; a late start followed by one on time puts `rpm + 1` arrivals in some window, which a
rolling window answers 429. Measured (benchmarks/bench_pacing.py, 20 requests/s over a rolling 1 s
window, 8 in flight): pacing at exactly the limit got 8 429s in 208 requests; 5 % under it, none.

Why it adapts (AIMD, as TCP's congestion window): the configured rate may still be too high (another
client shares the quota, the gateway counts differently). After a 429, the pace drops to
`DECREASE` × itself (once for the requests started at the old pace, not once per 429 they get),
down to `MIN_FRACTION` of the configured rate; after `INCREASE_AFTER` successes it creeps back by
`STEP` of the configured rate, never above `HEADROOM` of it.

Why one pause for everybody: a 429 means the whole client is over the limit, not one request. Each
worker waiting out its own Retry-After (what the openai SDK does per request) would send the other
in-flight requests into 429s of their own, then resume all at once (a thundering herd). Here a 429
sets a pause every worker honours before its next request, and after it the starts are spaced
again — at the (lowered) pacing interval, or, without pacing, one every `RESUME_SPACING` seconds
until a request succeeds. A precise wait (`retry-after-ms`) is honoured as given. A Retry-After in
whole seconds, R, only says the wait is more than R - 1 and at most R (a 20 requests/s window's 429
says "1" for a wait of a few ms): the adaptive pacer pauses R - 1 seconds plus one pacing interval,
doubled at each 429 in a row, up to R. It probes rather than stall every worker for up to a second
per 429 (measured on that window with whole-second Retry-After only: 9 full pauses took the exact
pacer to 0.52 of the bound, the adaptive one got no 429 at all and 0.93).

Where the state (next start, paused until, the adapted pace and its counters) lives is the pacer's
`state`: in this process (`ProcessState`, for the workers of one job), or in a file every process
of the host shares (`host_pacing.FileState`, for the chat operator's task instances), so that they
slow down and creep back together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

RESUME_SPACING = 0.1  # seconds between starts after a 429 when no requests_per_minute is set
HEADROOM = 0.95  # the adaptive pace starts at, and never exceeds, this fraction of requests_per_minute
DECREASE = 0.8  # after a 429 the pace is multiplied by this...
MIN_FRACTION = 0.1  # ...down to this fraction of requests_per_minute at the slowest
INCREASE_AFTER = 5  # successes in a row after which the pace creeps back...
STEP = 0.02  # ...by this fraction of requests_per_minute

# The pacing state: one list of floats, these indices (`host_pacing.FileState` stores it as it is).
NEXT_START, PAUSED_UNTIL, FRACTION, SUCCESSES, STREAK, DECREASED_AT = range(6)
STATE_FIELDS = 6


def initial_state() -> list[float]:
    """No start taken, no pause, the pace at `HEADROOM`, no counters; `FRACTION` 0 reads as HEADROOM
    (a file written before the pace was shared has none)."""
    return [0.0, 0.0, HEADROOM, 0.0, 0.0, 0.0]


class Stopped(Exception):
    """The job is stopping (another batch failed): a waiting worker gives up its turn."""


class PacingState(Protocol):
    """The state (`STATE_FIELDS` floats, indexed by `NEXT_START`...), read and updated under a lock;
    `clock` tells the time its times use."""

    clock: Callable[[], float]

    def locked(self) -> AbstractContextManager[list[float]]: ...


class ProcessState:
    """The pacing state of one process (its threads share it)."""

    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times = initial_state()

    @contextmanager
    def locked(self) -> Iterator[list[float]]:
        with self._lock:
            yield self._times


class RequestPacer:
    """Spaces requests, adapts their pace to 429s and holds them all during a 429 pause.

    :param requests_per_minute: the endpoint's limit; None or 0 for no pacing.
    :param stop: set when the job stops; waiting workers then raise `Stopped`.
    :param state: where the state lives (default: this process; `host_pacing.FileState`: the host).
    :param adaptive: False for the pacer before issue 19 (starts exactly 60/rpm apart, every 429
        paused for its whole Retry-After): what benchmarks/bench_pacing.py compares against.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] | None = None,
        state: PacingState | None = None,
        *,
        adaptive: bool = True,
    ) -> None:
        if requests_per_minute is not None and (
            isinstance(requests_per_minute, bool) or not isinstance(requests_per_minute, (int, float))
        ):
            raise TypeError(f"requests_per_minute must be a number or None, not {requests_per_minute!r}")
        if requests_per_minute is not None and requests_per_minute < 0:
            raise ValueError(f"requests_per_minute must be ≥ 0, not {requests_per_minute!r}")
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0  # at the configured rate
        self.adaptive = adaptive and self.interval > 0  # without a rate there is nothing to adapt
        self.stop = stop or threading.Event()
        self.state: PacingState = state or ProcessState()
        self._clock = clock or self.state.clock
        self._cautious = False  # after a 429 without pacing: space starts until a success
        self.paused_seconds = 0.0  # total time of the pauses (for the progress line)

    def fraction(self) -> float:
        """The pace now, as a fraction of requests_per_minute (1.0 for the exact pacer)."""
        with self.state.locked() as state:
            return self._fraction(state)

    def _fraction(self, state: list[float]) -> float:
        return (state[FRACTION] or HEADROOM) if self.adaptive else 1.0

    def _spacing(self, state: list[float]) -> float:
        if self.interval:
            return self.interval / self._fraction(state)
        return RESUME_SPACING if self._cautious else 0.0

    def wait_turn(self) -> float:
        """Block until the caller may start a request, and return when its turn began (the
        `started` of `rate_limited`); raise `Stopped` if the job stops meanwhile."""
        while True:
            with self.state.locked() as state:
                now = self._clock()
                next_start, paused_until = state[NEXT_START], state[PAUSED_UNTIL]
                start = max(now, next_start, paused_until)
                state[NEXT_START] = start + self._spacing(state)
            if start > now and self.stop.wait(start - now):
                raise Stopped()
            if self.stop.is_set():
                raise Stopped()
            with self.state.locked() as state:
                # A pause set while this worker slept takes its turn away: it queues again.
                if state[PAUSED_UNTIL] <= paused_until or state[PAUSED_UNTIL] <= self._clock():
                    return start

    def pause(self, seconds: float) -> None:
        """Hold every worker's next request for `seconds` from now (a longer pause already set wins)."""
        with self.state.locked() as state:
            now = self._clock()
            until = now + max(0.0, seconds)
            if until > state[PAUSED_UNTIL]:
                self.paused_seconds += until - max(state[PAUSED_UNTIL], now)
                state[PAUSED_UNTIL] = until
            # The first start after the pause is at its end; the next ones are spaced from it.
            state[NEXT_START] = max(state[NEXT_START], state[PAUSED_UNTIL])
        self._cautious = True

    def rate_limited(self, retry_after: float, started: float | None = None) -> float:
        """A request whose turn began at `started` (None: unknown) was answered 429 with a
        Retry-After of `retry_after` seconds: slow the pace and pause everybody (see the module's
        docstring); returns the pause."""
        if not self.adaptive:
            self.pause(retry_after)
            return retry_after
        with self.state.locked() as state:
            if started is None or started >= state[DECREASED_AT]:
                # Requests started before the last decrease were sent at the old pace: their 429s
                # say nothing new about the lowered one (8 in flight would otherwise cut it 8 times).
                state[FRACTION] = max(MIN_FRACTION, self._fraction(state) * DECREASE)
                state[DECREASED_AT] = self._clock()
                state[STREAK] += 1  # decreases without a success between them
            state[SUCCESSES] = 0.0
            probe = self._spacing(state) * 2 ** (state[STREAK] - 1)
        seconds = retry_after
        if retry_after >= 1 and float(retry_after).is_integer():
            seconds = min(retry_after, retry_after - 1 + probe)
        self.pause(seconds)
        return seconds

    def succeeded(self) -> None:
        """A request got through: without pacing, starts need no spacing any more; with adaptive
        pacing, a run of successes brings the pace back up."""
        self._cautious = False
        if not self.adaptive:
            return
        with self.state.locked() as state:
            state[STREAK] = 0.0
            state[SUCCESSES] += 1
            if state[SUCCESSES] >= INCREASE_AFTER:
                state[SUCCESSES] = 0.0
                state[FRACTION] = min(HEADROOM, self._fraction(state) + STEP)


__all__ = [
    "DECREASE",
    "HEADROOM",
    "INCREASE_AFTER",
    "MIN_FRACTION",
    "RESUME_SPACING",
    "STATE_FIELDS",
    "STEP",
    "PacingState",
    "ProcessState",
    "RequestPacer",
    "Stopped",
    "initial_state",
]

"""Client-side pacing shared by the workers of one job: request starts spaced 60/rpm seconds apart,
and one shared pause when the endpoint answers 429.

Why spacing and not a token bucket with a burst: the endpoint counts requests per model over a
window we do not see; evenly spaced starts never exceed `requests_per_minute` in any window, so a
paced job at the endpoint's limit is not answered 429 (OVH: 400 requests per minute and model with a
token).

Why one pause for everybody: a 429 means the whole client is over the limit, not one request. Each
worker waiting out its own Retry-After (what the openai SDK does per request) would send the other
in-flight requests into 429s of their own, then resume all at once (a thundering herd). Here the
first 429 sets a pause every worker honours before its next request, and after it the starts are
spaced again — at the pacing interval, or, without pacing, one every `RESUME_SPACING` seconds until a
request succeeds.

Where the two times (next start, paused until) live is the pacer's `state`: in this process
(`ProcessState`, for the workers of one job), or in a file every process of the host
shares (`host_pacing.FileState`, for the chat operator's task instances).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

RESUME_SPACING = 0.1  # seconds between starts after a 429 when no requests_per_minute is set


class Stopped(Exception):
    """The job is stopping (another batch failed): a waiting worker gives up its turn."""


class PacingState(Protocol):
    """[next start, paused until], read and updated under a lock; `clock` tells the time they use."""

    clock: Callable[[], float]

    def locked(self) -> AbstractContextManager[list[float]]: ...


class ProcessState:
    """The pacing state of one process (its threads share it)."""

    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times = [0.0, 0.0]

    @contextmanager
    def locked(self) -> Iterator[list[float]]:
        with self._lock:
            yield self._times


class RequestPacer:
    """Spaces requests and holds them all during a 429 pause.

    :param requests_per_minute: the most requests started in any minute; None or 0 for no pacing.
    :param stop: set when the job stops; waiting workers then raise `Stopped`.
    :param state: where the times live (default: this process; `host_pacing.FileState`: the host).
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] | None = None,
        state: PacingState | None = None,
    ) -> None:
        if requests_per_minute is not None and (
            isinstance(requests_per_minute, bool) or not isinstance(requests_per_minute, (int, float))
        ):
            raise TypeError(f"requests_per_minute must be a number or None, not {requests_per_minute!r}")
        if requests_per_minute is not None and requests_per_minute < 0:
            raise ValueError(f"requests_per_minute must be ≥ 0, not {requests_per_minute!r}")
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.stop = stop or threading.Event()
        self.state: PacingState = state or ProcessState()
        self._clock = clock or self.state.clock
        self._cautious = False  # after a 429 without pacing: space starts until a success
        self.paused_seconds = 0.0  # total time of the pauses (for the progress line)

    def wait_turn(self) -> None:
        """Block until the caller may start a request; raise `Stopped` if the job stops meanwhile."""
        while True:
            with self.state.locked() as times:
                now = self._clock()
                next_start, paused_until = times
                start = max(now, next_start, paused_until)
                times[0] = start + (self.interval or (RESUME_SPACING if self._cautious else 0.0))
            if start > now and self.stop.wait(start - now):
                raise Stopped()
            if self.stop.is_set():
                raise Stopped()
            with self.state.locked() as times:
                # A pause set while this worker slept takes its turn away: it queues again.
                if times[1] <= paused_until or times[1] <= self._clock():
                    return

    def pause(self, seconds: float) -> None:
        """Hold every worker's next request for `seconds` from now (a longer pause already set wins)."""
        with self.state.locked() as times:
            now = self._clock()
            until = now + max(0.0, seconds)
            if until > times[1]:
                self.paused_seconds += until - max(times[1], now)
                times[1] = until
            times[0] = max(times[0], times[1])
        self._cautious = True

    def succeeded(self) -> None:
        """A request got through: without pacing, starts need no spacing any more."""
        self._cautious = False


__all__ = ["RESUME_SPACING", "PacingState", "ProcessState", "RequestPacer", "Stopped"]

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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

RESUME_SPACING = 0.1  # seconds between starts after a 429 when no requests_per_minute is set


class Stopped(Exception):
    """The job is stopping (another batch failed): a waiting worker gives up its turn."""


class RequestPacer:
    """Spaces the requests of one job and holds them all during a 429 pause.

    :param requests_per_minute: the most requests started in any minute; None or 0 for no pacing.
    :param stop: set when the job stops; waiting workers then raise `Stopped`.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute is not None and (
            isinstance(requests_per_minute, bool) or not isinstance(requests_per_minute, (int, float))
        ):
            raise TypeError(f"requests_per_minute must be a number or None, not {requests_per_minute!r}")
        if requests_per_minute is not None and requests_per_minute < 0:
            raise ValueError(f"requests_per_minute must be ≥ 0, not {requests_per_minute!r}")
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._paused_until = 0.0
        self._cautious = False  # after a 429 without pacing: space starts until a success
        self.paused_seconds = 0.0  # total time of the pauses (for the progress line)

    def wait_turn(self) -> None:
        """Block until the caller may start a request; raise `Stopped` if the job stops meanwhile."""
        while True:
            with self._lock:
                now = self._clock()
                start = max(now, self._next_start, self._paused_until)
                gap = self.interval or (RESUME_SPACING if self._cautious else 0.0)
                self._next_start = start + gap
                paused_until = self._paused_until
            if start > now and self.stop.wait(start - now):
                raise Stopped()
            if self.stop.is_set():
                raise Stopped()
            with self._lock:
                # A pause set while this worker slept takes its turn away: it queues again.
                if self._paused_until <= paused_until or self._paused_until <= self._clock():
                    return

    def pause(self, seconds: float) -> None:
        """Hold every worker's next request for `seconds` from now (a longer pause already set wins)."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            if until > self._paused_until:
                self.paused_seconds += until - max(self._paused_until, self._clock())
                self._paused_until = until
            self._next_start = max(self._next_start, self._paused_until)
            self._cautious = True

    def succeeded(self) -> None:
        """A request got through: without pacing, starts need no spacing any more."""
        if self._cautious:
            with self._lock:
                self._cautious = False


__all__ = ["RESUME_SPACING", "RequestPacer", "Stopped"]

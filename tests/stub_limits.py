"""The rate limiters of tests/ovh_stub.py: the shapes real gateways count requests in.

Each limiter is asked `admit(now)` for every request that reaches the limit check; it answers None
(the request is accepted and counted) or the seconds until a request would be accepted (the stub
answers 429 with that wait in `Retry-After`, rounded up to whole seconds as HTTP allows, and, unless
told not to, in `retry-after-ms`). All of them hold `allowed = rpm × window / 60` requests per
`window` seconds on average; they differ in when:

- `rolling` (the default, a sliding log): a request is refused when the last `window` seconds
  already hold `allowed` accepted requests. The strictest in every window; pacing exactly at the
  limit trips it whenever arrival jitter puts `allowed + 1` starts inside one window.
- `fixed` (a counter reset at each window boundary, `floor(now / window)`): `allowed` requests per
  window, however they fall inside it; a client may send `allowed` at the end of one window and
  `allowed` at the start of the next (2× at a boundary). A refusal's wait is to the next boundary.
- `bucket` (a token bucket, nginx `limit_req rate=r burst=b nodelay`, computed as GCRA): one token
  every 1/r seconds, r = rpm / 60, up to `burst` saved beyond the one a request uses; a request
  finding no token is refused. With `burst=0` starts must be 1/r apart, to the millisecond.
"""

from __future__ import annotations

import math
from collections import deque

SHAPES = ("rolling", "fixed", "bucket")


class RollingWindow:
    def __init__(self, allowed: int, window: float) -> None:
        self.allowed, self.window = allowed, window
        self._accepted: deque[float] = deque()  # arrival times inside the window

    def admit(self, now: float) -> float | None:
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
        if len(self._accepted) < self.allowed:
            self._accepted.append(now)
            return None
        return self._accepted[0] + self.window - now


class FixedWindow:
    def __init__(self, allowed: int, window: float) -> None:
        self.allowed, self.window = allowed, window
        self._index = -1  # which window the counter is for
        self._count = 0

    def admit(self, now: float) -> float | None:
        index = math.floor(now / self.window)
        if index != self._index:
            self._index, self._count = index, 0
        if self._count < self.allowed:
            self._count += 1
            return None
        return (index + 1) * self.window - now


class TokenBucket:
    def __init__(self, requests_per_second: float, burst: int) -> None:
        self.interval = 1.0 / requests_per_second
        self.burst = burst
        self._tat = 0.0  # theoretical arrival time: when the bucket would be full again

    def admit(self, now: float) -> float | None:
        tat = max(self._tat, now)
        earliest = tat - self.burst * self.interval  # the first moment a token is there
        if now >= earliest - 1e-9:
            self._tat = tat + self.interval
            return None
        return earliest - now


def make_limiter(
    shape: str, requests_per_minute: float, window: float, burst: int
) -> RollingWindow | FixedWindow | TokenBucket:
    if shape == "rolling":
        return RollingWindow(max(1, int(requests_per_minute * window / 60)), window)
    if shape == "fixed":
        return FixedWindow(max(1, int(requests_per_minute * window / 60)), window)
    if shape == "bucket":
        return TokenBucket(requests_per_minute / 60, burst)
    raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")


def retry_headers(wait: float, precise: bool) -> dict[str, str]:
    """A 429's headers for `wait` seconds: Retry-After in whole seconds (at least 1: "0" would
    invite an immediate retry), retry-after-ms to the millisecond when `precise`."""
    headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    if precise:
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    return headers

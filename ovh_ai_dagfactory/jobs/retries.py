"""One request sent under a pacer and retried by us, not by the SDK: the loop shared by the units of
a job (`runner.py`) and by paced chat requests (`requests_per_minute` on the
chat operator, whose pacer is shared by every process of the host: `host_pacing.host_pacer`).

Why our loop and not the SDK's retries (sent with `max_retries=0`): the SDK waits out each 429 for
its own request, invisible to the other requests under the same limit, which keep sending into it
and then resume all at once. Here a 429 is told to the pacer (`RequestPacer.rate_limited`), which
slows its pace and pauses everybody using it for the server's Retry-After (a whole-second one probed
rather than waited out in full: pacing.py says why). A 5xx, 408, 409, timeout, dropped connection or
non-JSON 2xx retries this request alone, `max_retries` times with exponential backoff and jitter. A
fatal error (401, 404, a bad parameter) is raised at once. A refusal (400, 413, 422) is raised as it
is: the runner hands a refused unit to its request kind (the embedding kind narrows a batch down to
its text).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ovh_ai_dagfactory.calls.errors import (
    BadRequestError,
    EndpointConnectionError,
    IncompatibleResponseError,
    OVHCloudAIEndpointsError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
    UnexpectedResponseError,
    UnprocessableEntityError,
)
from ovh_ai_dagfactory.jobs.pacing import RequestPacer, Stopped

T = TypeVar("T")


@dataclass
class RetryPolicy:
    """How a request is retried. `max_retries`: tries after the first for 5xx, 408, 409, timeouts,
    connection errors and non-JSON 2xx. `max_rate_limit_waits`: 429s one request waits out before
    it fails. `max_retry_after`: a longer Retry-After fails at once (task retries, with their
    retry_delay, are the better wait)."""

    max_retries: int = 2
    max_rate_limit_waits: int = 10
    max_retry_after: float = 120.0
    backoff: float = 0.5  # seconds before the first retry; doubled each time, with jitter
    backoff_cap: float = 8.0


class RequestEvents(Protocol):
    """What a caller counts (a job's progress line)."""

    def request_sent(self) -> None: ...
    def was_rate_limited(self) -> None: ...
    def retried(self) -> None: ...


class _NoEvents:
    def request_sent(self) -> None:
        pass

    def was_rate_limited(self) -> None:
        pass

    def retried(self) -> None:
        pass


def send_paced(
    send: Callable[[], T],
    pacer: RequestPacer,
    policy: RetryPolicy,
    *,
    what: str,
    slower: str = "lower requests_per_minute",
    events: RequestEvents | None = None,
) -> T:
    """`send()` once the pacer gives a turn, again after each 429 pause or retryable error.

    :param what: names the request in errors, e.g. "embedding batch 3 (texts 192-255)".
    :param slower: the hint when the limit is still hit after `max_rate_limit_waits` pauses.
    """
    events = events or _NoEvents()
    retries = waits = 0
    while True:
        started = pacer.wait_turn()
        events.request_sent()
        try:
            response = send()
        except RateLimitError as error:
            events.was_rate_limited()
            waits += 1
            asked = getattr(error, "retry_after", None)
            pause = asked if asked is not None else backoff(waits, 1.0, 30.0)
            if waits > policy.max_rate_limit_waits or pause > policy.max_retry_after:
                why = (
                    f"the server asked to wait {pause:g} s, over max_retry_after"
                    if pause > policy.max_retry_after
                    else f"still rate-limited after waiting out {waits - 1} 429s"
                )
                raise with_context(error, f"{what}: {why}; {slower}") from None
            pacer.rate_limited(pause, started)  # slows the pace too; may pause less (pacing.py)
            continue
        except IncompatibleResponseError as error:  # fatal, although an UnexpectedResponseError
            raise with_context(error, what) from None
        except (ServerError, EndpointConnectionError, UnexpectedResponseError) as error:
            retries += 1
            if retries > policy.max_retries:
                raise with_context(error, f"{what}, after {policy.max_retries} retries of that request") from None
            events.retried()
            if pacer.stop.wait(backoff(retries, policy.backoff, policy.backoff_cap)):
                raise Stopped() from None
            continue
        except (BadRequestError, UnprocessableEntityError, RequestRejectedError):
            raise  # a refusal: the runner hands it to the unit's request kind
        except OVHCloudAIEndpointsError as error:
            raise with_context(error, what) from None
        pacer.succeeded()
        return response


def with_context(error: OVHCloudAIEndpointsError, context: str) -> OVHCloudAIEndpointsError:
    """`error` again, same class and attributes, its message followed by `[context]`."""
    attributes = {name: value for name, value in vars(error).items() if not name.startswith("_")}
    return type(error)(f"{error} [{context}]", **attributes)


def backoff(attempt: int, base: float, cap: float) -> float:
    # Full jitter in the upper half: requests retrying together spread out.
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


__all__ = ["RequestEvents", "RetryPolicy", "backoff", "send_paced", "with_context"]

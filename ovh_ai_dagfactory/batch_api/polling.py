"""The decisions of a wait for a batch job, shared by the two ways of waiting: the trigger (async, in
Airflow's triggerer) and the operator with `deferrable=False` (sync, in its worker slot).

Each of them only does the I/O: it retrieves the batch, hands what the poll gave (the batch, or the
error it failed with) to `after_poll()`, and either returns the event it gets (cancelling the batch
first on `timeout`) or sleeps for as long as `pause()` says. `BatchWait` decides the rest, the same
way for both:

    a fatal error (401, 404, ...)   raised at once
    another error of ours           counted, logged; raised after MAX_POLL_FAILURES in a row
    a batch                         a status change is logged; the final event once it has ended
    past the deadline               the `timeout` event
    pause()                         seconds to sleep before the next poll (grows by BACKOFF up to
                                    max_poll_interval, never past the deadline)

Events are plain JSON, as a trigger event must be:
    {"status": "completed" | "failed" | "expired" | "cancelled" | "timeout", "batch_id", "batch": {...}}
"""

from __future__ import annotations

import time
from typing import Any

from ovh_ai_dagfactory.calls.errors import OVHCloudAIEndpointsError, OVHCloudAIEndpointsFatalError

#: Statuses after which a batch never changes again.
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
BACKOFF = 1.5
#: A wait of hours does not end on one 5xx or dropped connection (after the SDK's own retries).
MAX_POLL_FAILURES = 5
_SUMMARY_KEYS = ("id", "status", "output_file_id", "error_file_id", "request_counts", "errors", "completion_window")


class BatchWait:
    """One wait for batch `batch_id`, until `deadline` (UNIX time)."""

    def __init__(
        self, batch_id: str, *, deadline: float, poll_interval: float, max_poll_interval: float, log: Any
    ) -> None:
        # `log`: the caller's logger (a logging.Logger, or the task SDK's structlog one on Airflow 3).
        self.batch_id = batch_id
        self.deadline = deadline
        self.interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.log = log
        self.failures = 0
        self.status: str | None = None
        self.batch: dict[str, Any] = {}

    def after_poll(self, answer: dict[str, Any] | OVHCloudAIEndpointsError) -> dict[str, Any] | None:
        """The event that ends the wait, given what a poll answered (the batch, or the error it
        failed with), or None to poll again after `pause()`. A `timeout` event means the caller
        cancels the batch."""
        if isinstance(answer, OVHCloudAIEndpointsFatalError):
            raise answer
        if isinstance(answer, OVHCloudAIEndpointsError):
            self._failed(answer)
        elif (event := self._seen(answer)) is not None:
            return event
        return self._timed_out()

    def _failed(self, error: OVHCloudAIEndpointsError) -> None:
        """A poll failed with a transient error: raise it if it is one too many, else poll again."""
        self.failures += 1
        if self.failures >= MAX_POLL_FAILURES:
            raise error
        self.log.warning(
            "Polling batch %s failed (%d in a row, polling again): %s", self.batch_id, self.failures, error
        )

    def _seen(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """A poll answered `batch`: the final event when it has ended, else None."""
        self.failures = 0
        self.batch = batch
        status = str(batch.get("status") or self.status or "unknown")
        if status != self.status:
            self.log.info("Batch %s is %s (requests: %s)", self.batch_id, status, batch.get("request_counts"))
        self.status = status
        return self._event(status) if status in FINAL_STATUSES else None

    def _timed_out(self) -> dict[str, Any] | None:
        """The `timeout` event once the deadline has passed (the caller then cancels the batch)."""
        if time.time() < self.deadline:
            return None
        self.log.warning("Batch %s is still %s at its deadline: cancelling it", self.batch_id, self.status)
        return self._event("timeout")

    def pause(self) -> float:
        """Seconds to sleep before the next poll; the next pause is longer, up to `max_poll_interval`."""
        seconds = max(0.0, min(self.interval, self.deadline - time.time()))
        self.interval = min(self.interval * BACKOFF, self.max_poll_interval)
        return seconds

    def _event(self, status: str) -> dict[str, Any]:
        return {"status": status, "batch_id": self.batch_id, "batch": summary(self.batch)}


def summary(batch: dict[str, Any]) -> dict[str, Any]:
    """What the operator needs from a batch object (and what is worth keeping in XCom)."""
    return {key: batch[key] for key in _SUMMARY_KEYS if batch.get(key) is not None}

"""Errors of batch jobs (`/v1/files` + `/v1/batches`), in the style of `calls/errors.py`.

A batch ends in one of four states besides `completed`; each has its own class, so a DAG author can
tell them apart in an `on_failure_callback`, and each says what to do next. Which ones the task's
retries may fix, and why:

- `BatchExpiredError` (transient): the platform did not finish within the completion window; a new
  batch, on a retry, may well finish (or ask for a longer window).
- `BatchFailedError` (fatal): the platform refused the input file as a whole (validation); the same
  file would be refused again.
- `BatchCancelledError` (fatal): someone cancelled the batch; retrying would override that decision.
- `BatchTimeoutError` (transient): the wait outlived the completion window plus a grace period
  without the platform reaching a final state; the batch is cancelled.
- `BatchLinesFailedError`: some request lines failed and `on_line_error="fail"`. Fatal when every
  failed line was refused for its content (4xx other than 408/409/429), transient otherwise.
- `BatchAnonymousError` (fatal): OVH refuses batch jobs without a token; raised before any upload.

Attributes (kept by `serialize()`): `batch_id`, `status`, and for line failures `failed` (at most
the first 20, each `{"index", "custom_id", "status_code", "error"}`) and `failed_count`.
"""

from __future__ import annotations

from typing import Any

from ovh_ai_dagfactory.calls.errors import OVHCloudAIEndpointsError, OVHCloudAIEndpointsFatalError

_TRANSIENT_LINE_STATUSES = {408, 409, 429}


class BatchError(OVHCloudAIEndpointsError):
    """A batch job that did not give its results."""

    batch_id: str | None = None
    status: str | None = None


class BatchExpiredError(BatchError):
    status = "expired"


class BatchTimeoutError(BatchError):
    pass


class BatchFailedError(BatchError, OVHCloudAIEndpointsFatalError):
    status = "failed"


class BatchCancelledError(BatchError, OVHCloudAIEndpointsFatalError):
    status = "cancelled"


class BatchLinesFailedError(BatchError):
    """Some lines failed (transient flavour: a server error or a rate limit among them)."""

    failed: list[dict[str, Any]] = []
    failed_count: int = 0


class BatchLinesRefusedError(BatchLinesFailedError, OVHCloudAIEndpointsFatalError):
    """Some lines failed, every one refused for its content (4xx): retrying would not help."""


class BatchAnonymousError(OVHCloudAIEndpointsFatalError):
    """The connection is anonymous: OVH refuses batch jobs without a token."""


def lines_failed_error(batch_id: str, failures: list[dict[str, Any]], total: int) -> BatchLinesFailedError:
    """The error for `failures` (each as `files.LineFailure.as_dict()`) out of `total` lines."""
    statuses = [f.get("status_code") for f in failures]
    refused = all(isinstance(s, int) and 400 <= s < 500 and s not in _TRANSIENT_LINE_STATUSES for s in statuses)
    cls = BatchLinesRefusedError if refused else BatchLinesFailedError
    first = failures[0]
    return cls(
        f"Batch {batch_id}: {len(failures)} of {total} request line(s) failed; the first is line "
        f"{first['index']} (custom_id {first['custom_id']!r}, status {first['status_code']}): "
        f"{first['error']}. Fix the failing inputs, or set on_line_error='report' to keep the "
        "successes and get the failures in the XCom key 'failed'.",
        batch_id=batch_id,
        status="completed",
        failed=failures[:20],
        failed_count=len(failures),
    )


def batch_ended_error(batch_id: str, status: str, reason: str) -> BatchError:
    """The error for a batch that reached `status` (expired, failed, cancelled, or a wait timeout)."""
    if status == "expired":
        return BatchExpiredError(
            f"Batch {batch_id} expired: the platform did not finish it within its completion window"
            f"{reason}. The task's retries (if any) submit a new batch; a longer completion_window "
            "('48h', '72h') or fewer requests per batch make expiry less likely.",
            batch_id=batch_id,
        )
    if status == "failed":
        return BatchFailedError(
            f"Batch {batch_id} failed: the platform refused it{reason}. Not retried: the same input "
            "file would be refused again. Check the model name and the request parameters.",
            batch_id=batch_id,
        )
    if status in ("cancelled", "cancelling"):
        return BatchCancelledError(
            f"Batch {batch_id} was cancelled{reason}. Not retried: clear the task to submit a new batch.",
            batch_id=batch_id,
            status=status,
        )
    return BatchTimeoutError(
        f"Batch {batch_id} did not reach a final state in time (last status {status!r}){reason}; it was "
        "cancelled. The task's retries (if any) submit a new batch.",
        batch_id=batch_id,
        status=status,
    )


def anonymous_batch_error(conn_id: str) -> BatchAnonymousError:
    return BatchAnonymousError(
        f"Batch jobs need a token: connection '{conn_id}' is anonymous, and OVHcloud AI Endpoints "
        "refuses anonymous batch jobs. Nothing was uploaded. Set the token as the connection's password "
        "(and drop the extra 'anonymous'), or use the synchronous operators."
    )

"""The progress of a job: counters the workers update, and a log line at most every `interval`
seconds plus one at the end. The job names itself and its items; an embedding job's lines:

    Embedding progress: 6,400/100,000 texts (6.4%), 100 requests, 51,200 tokens, 3,190 texts/s,
    ETA 29s, 2 retries, 5 rate-limited (429), 1.0 s paused

A job whose items can fail on their own (chat at volume) counts them (`counts_failures`), and its
lines say so after the count: `Chat progress: 400/1,000 items (40.0%), 3 failed, ...`.

Only counts and times are logged, never an item, a result or anything of the connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

PROGRESS_INTERVAL = 10.0  # seconds between two progress lines at most
USAGE_KEYS = ("prompt_tokens", "total_tokens")  # what an embedding answer's usage counts
CHAT_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")  # what a chat answer's counts


class JobProgress:
    """Counters of one job, safe to update from several threads.

    :param total: the number of items, when known (it gives the percentage and the ETA).
    :param log: where the lines go (the hook's or the operator's logger).
    :param title: starts each line, e.g. "Embedding" ("Embedding progress: ...", "Embedding done: ...").
    :param noun: the items, counted, e.g. "texts" ("6,400/100,000 texts", "3,190 texts/s").
    :param usage_keys: the token counts of the answers' `usage` summed (`usage()`); the line shows
        `total_tokens`.
    :param counts_failures: the items can fail one by one (`item_failed`): the lines show how many.
    """

    def __init__(
        self,
        total: int | None,
        log: logging.Logger | Any,
        *,
        title: str,
        noun: str,
        usage_keys: Sequence[str] = USAGE_KEYS,
        counts_failures: bool = False,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.log = log
        self.title = title
        self.noun = noun
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self._last_line = self.started
        self.items_done = 0
        self.items_skipped = 0  # already written by an earlier try (resume)
        self.counts_failures = counts_failures
        self.items_failed = 0  # of the items done or skipped, those whose row records an error
        self.requests = 0
        self._usage = dict.fromkeys(usage_keys, 0)
        self.retries = 0
        self.rate_limited = 0
        self.paused_seconds = 0.0

    def request_sent(self) -> None:
        with self._lock:
            self.requests += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def was_rate_limited(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def skipped(self, items: int) -> None:
        with self._lock:
            self.items_skipped += items

    def item_failed(self, items: int = 1) -> None:
        with self._lock:
            self.items_failed += items

    def batch_done(self, items: int, usage: dict[str, Any] | None) -> None:
        usage = usage or {}
        with self._lock:
            self.items_done += items
            for key in self._usage:
                self._usage[key] += _int(usage.get(key))

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def maybe_log(self) -> None:
        """A progress line, unless one was logged less than `interval` seconds ago."""
        now = self._clock()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.log.info("%s progress: %s", self.title, self.line())

    def log_final(self) -> None:
        self.log.info("%s done: %s", self.title, self.line(final=True))

    def line(self, *, final: bool = False) -> str:
        with self._lock:
            elapsed = max(self._clock() - self.started, 1e-9)
            done = self.items_done + self.items_skipped
            rate = self.items_done / elapsed
            noun = self.noun
            parts = [f"{done:,}/{self.total:,} {noun}" if self.total is not None else f"{done:,} {noun}"]
            if self.total:
                parts[0] += f" ({100 * done / self.total:.1f}%)"
            if self.counts_failures:
                parts.append(f"{self.items_failed:,} failed")
            if self.items_skipped:
                parts.append(f"{self.items_skipped:,} already written by an earlier try")
            tokens = self._usage.get("total_tokens", 0)
            parts += [f"{self.requests:,} requests", f"{tokens:,} tokens", f"{rate:,.0f} {noun}/s"]
            if final:
                parts.append(f"in {_duration(elapsed)}")
            elif self.total is not None:
                remaining = self.total - done
                parts.append(f"ETA {_duration(remaining / rate)}" if rate > 0 else "ETA unknown")
            parts += [f"{self.retries:,} retries", f"{self.rate_limited:,} rate-limited (429)"]
            if self.paused_seconds:
                parts.append(f"{self.paused_seconds:.1f} s paused")
            return ", ".join(parts)

    def usage(self) -> dict[str, int]:
        with self._lock:
            return dict(self._usage)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


__all__ = ["CHAT_USAGE_KEYS", "PROGRESS_INTERVAL", "USAGE_KEYS", "JobProgress"]

"""Pacing shared by every process of one host: the chat operator's `requests_per_minute`.

A `for_each` chat step runs each item as its own task instance: its own process, on whichever worker
Airflow picks. No object of ours can span them, so their shared state is a small file per endpoint
and model, locked with `flock` while it is read and updated: every task on the host (mapped or not,
any DAG) asking the same model of the same endpoint takes its turn from the same file. Six doubles
in it (`pacing.NEXT_START`...): when the next request may start, until when a 429 holds everybody,
and the adapted pace with its counters, so that the processes slow down and creep back together.
A file of 16 bytes (written before the pace was shared) is read as its two times and a fresh pace;
a process of that version reads the first 16 bytes of a new file, which are the same two times.

This is "where Airflow allows": processes on one host. Task instances on different hosts (Celery
workers, Kubernetes pods) pace per host, so the endpoint sees up to `hosts × requests_per_minute`.
Give each host its share, or route the step to one queue that one worker serves (`queue:` in the
pipeline); docs/provider.md says more.

The files live in `$OVH_AI_DAGFACTORY_PACING_DIR`, by default `<temp dir>/ovh-ai-dagfactory-pacing-<uid>`,
a folder of the Airflow user's own (mode 0700). If it is someone else's or open to others, the
pacing stays inside the process (with a warning) rather than trust a file another user controls.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ovh_ai_dagfactory.jobs.pacing import NEXT_START, PAUSED_UNTIL, STATE_FIELDS, RequestPacer, initial_state

PACING_DIR_ENV = "OVH_AI_DAGFACTORY_PACING_DIR"
# The pacing state (times are UNIX times: the clock all processes share), and its first version's part.
_STATE = struct.Struct(f"<{STATE_FIELDS}d")
_TIMES_ONLY = struct.Struct("<dd")
log = logging.getLogger(__name__)


class FileState:
    """The pacing state of every process of the host asking `model` of `base_url`: a small file (`_STATE`),
    locked with `flock` while it is read and updated. Its times are UNIX times, the clock all
    processes share."""

    clock = staticmethod(time.time)

    def __init__(self, base_url: str, model: str, directory: Path) -> None:
        key = hashlib.sha256(f"{base_url}\n{model}".encode()).hexdigest()[:24]
        self.path = directory / f"{key}.pace"

    @contextmanager
    def locked(self) -> Iterator[list[float]]:
        import fcntl  # POSIX only, like Airflow's workers

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = _read(os.pread(fd, _STATE.size, 0))
            before = list(state)
            yield state
            if state != before:
                os.pwrite(fd, _STATE.pack(*state), 0)
        finally:
            os.close(fd)  # releases the lock


def _read(raw: bytes) -> list[float]:
    """The state in `raw`: a whole record, the two times of the first version's, else a fresh state
    (an empty file, just made, or one cut short)."""
    state = initial_state()
    if len(raw) >= _STATE.size:
        return list(_STATE.unpack(raw[: _STATE.size]))
    if len(raw) >= _TIMES_ONLY.size:
        state[NEXT_START], state[PAUSED_UNTIL] = _TIMES_ONLY.unpack(raw[: _TIMES_ONLY.size])
    return state


def host_pacer(base_url: str, model: str, requests_per_minute: float) -> RequestPacer:
    """A pacer whose turns and pauses are shared by every process of the host asking `model` of
    `base_url`; within this process only when the pacing folder cannot be trusted (see above)."""
    directory = pacing_dir()
    return RequestPacer(requests_per_minute, state=FileState(base_url, model, directory) if directory else None)


def pacing_dir() -> Path | None:
    """The host's pacing folder, made if missing; None if it cannot be made or trusted."""
    configured = os.environ.get(PACING_DIR_ENV)
    default = Path(tempfile.gettempdir()) / f"ovh-ai-dagfactory-pacing-{os.getuid()}"
    directory = Path(configured) if configured else default
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.lstat()
    except OSError as error:
        log.warning("Pacing within this task only: cannot use %s (%s)", directory, error)
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        log.warning(
            "Pacing within this task only: %s is not a folder of this user's that others cannot write to "
            "(set %s to one)",
            directory,
            PACING_DIR_ENV,
        )
        return None
    return directory


__all__ = ["PACING_DIR_ENV", "FileState", "host_pacer", "pacing_dir"]

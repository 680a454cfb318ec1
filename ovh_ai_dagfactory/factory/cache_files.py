"""Writing the validation cache's files: atomically, and off the loader's thread while a folder loads.

A cold load writes one entry per pipeline file. Each write is a handful of system calls (create,
write, rename) that the loader would otherwise wait for between two files; a writer thread does
them while the loader goes on validating and building (file I/O releases the GIL, so the wait
overlaps with the loader's Python work). `BackgroundWrites` is used for the span of one load and
joined before the load returns, so every entry is on disk when Airflow sees the DAGs, and a
process that is killed meanwhile leaves at most temporary files, which pruning removes.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomically(entry: Path, data: bytes) -> None:
    """Write aside, then rename (parsing runs in several processes at once; rename is atomic on
    POSIX). Whatever fails — a full disk, a timeout signal mid-write — leaves no temporary file."""
    temporary: str | None = None
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, entry)
        temporary = None
    except OSError as exc:
        log.debug("pipeline cache: cannot write %s: %s", entry, exc)
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


class BackgroundWrites:
    """`write_atomically` in one writer thread, in the order asked; `close()` waits for all of them."""

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[tuple[Path, bytes] | None] = queue.SimpleQueue()
        # A daemon: if the loader's thread dies (the import timeout), the process may still exit.
        self._thread = threading.Thread(target=self._run, name="ovh-ai-dagfactory-cache", daemon=True)
        self._thread.start()

    def write(self, entry: Path, data: bytes) -> None:
        self._pending.put((entry, data))

    def close(self) -> None:
        self._pending.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._pending.get()) is not None:
            write_atomically(*item)

"""A job's inputs read from, and its results written to, object storage: Airflow's
ObjectStoragePath, so file://, s3://, gcs://... with an Airflow connection.

Input (`read_texts`, the embedding input; `read_records`, a chat job's items), streamed line by
line, never held whole:
- `.txt`: one text per line; blank lines are skipped and a text's id is its line number (from 1);
- anything else is JSON Lines: one object per line, the text in `text_field`, the id (optional)
  in `id_field` (a chat job's item is the whole object).

Output (`PartStore`): a directory of parts, one per unit of work, named by its number
(`part-000012.jsonl`), each line a row the request kind made of a result; an embedding job's rows
are `{"index": 768, "id": ..., "text_sha256": ..., "embedding": [...]}`. A part is written under a
temporary name starting with "." and renamed when complete, so a reader (or a retried try) never
sees half a part: a local rename is atomic, and on object stores the final key appears in one piece.
`_job.json` records what the parts were made from (model, batching, a hash of the input); a retried
try with the same job skips the parts already there (`StoredJob`), a different job is refused.
`manifest.json` is written last. A job of one request per item (chat) groups its items'
rows into parts of `part_size` items (`GroupedStoredJob`): the same files, fewer of them.

JSON Lines, not Parquet: pyarrow is in neither of the Airflow lines' constraints this provider is
tested with, and a 40 MB dependency for the output format alone is not worth it; every vector
database loader and DuckDB / pandas read JSON Lines directly.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.compat import object_storage_path
from ovh_ai_dagfactory.jobs.batches import Batch
from ovh_ai_dagfactory.jobs.progress import JobProgress

PART_FORMAT = "jsonl"
JOB_FILE = "_job.json"
MANIFEST_FILE = "manifest.json"
_PART_NAME = re.compile(r"^part-(\d{6,})\.jsonl$")


def read_texts(
    url: str, *, text_field: str = "text", id_field: str | None = None, conn_id: str | None = None
) -> Iterator[tuple[Any, str]]:
    """`(id, text)` of each text of the file at `url`, in file order, read as a stream."""
    for number, line, plain in _lines(url, conn_id):
        if plain:
            yield number, line
            continue
        yield _jsonl_text(url, number, _jsonl_object(url, number, line), text_field, id_field)


def read_records(url: str, *, conn_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Each record of the file at `url`, in file order, read as a stream: a JSON Lines object as it
    is, a line of a `.txt` file as `{"id": <line number>, "text": <line>}` (the items of a chat job)."""
    for number, line, plain in _lines(url, conn_id):
        yield {"id": number, "text": line} if plain else _jsonl_object(url, number, line)


def _lines(url: str, conn_id: str | None) -> Iterator[tuple[int, str, bool]]:
    """`(line number, line, the file is .txt)` of each non-blank line of the file at `url`."""
    path = object_storage_path(url, conn_id)
    plain = path.name.lower().endswith(".txt")
    with path.open("r", encoding="utf-8") as stream:
        # readline, not iteration: Airflow 2.11's file wrapper is not iterable.
        for number, line in enumerate(iter(stream.readline, ""), start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line, plain


def fingerprint_file(url: str, *, conn_id: str | None = None) -> tuple[int, str]:
    """The number of texts of the file at `url` (its non-blank lines: one text, or one JSON Lines
    record, each) and a hash of its bytes: what `_job.json` compares for an `input_file`.

    From the bytes, not the parsed records: it is read before any request starts, and parsing
    every record twice cost ~10 µs a text (a second per 100k texts) in front of the first request.
    A broken record is still found, by `read_texts`, when its batch is read."""
    path = object_storage_path(url, conn_id)
    digest = hashlib.sha256()
    count = 0
    with path.open("rb") as stream:
        for line in iter(stream.readline, b""):
            digest.update(line)
            stripped = line.strip()
            # bytes.strip() knows ASCII whitespace only; `read_texts` skips any blank line (str.strip).
            if stripped and (stripped[0] < 0x80 or line.decode("utf-8", "replace").strip()):
                count += 1
    return count, digest.hexdigest()


def fingerprint(items: Iterator[tuple[Any, str]]) -> tuple[int, str]:
    """The number of texts and a hash of the texts and ids, read once: what `_job.json` compares
    for an `input` list."""
    digest = hashlib.sha256()
    count = 0
    for text_id, text in items:
        digest.update(json.dumps([text_id, text], default=str).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


class PartStore:
    """The output directory of one job. Thread-safe for distinct parts.

    :param kind: names the job in messages ("another embedding job").
    """

    def __init__(self, url: str, conn_id: str | None = None, *, kind: str) -> None:
        self.url = url
        self.kind = kind
        self.root = object_storage_path(url, conn_id)

    def start(self, job: dict[str, Any]) -> set[int]:
        """Create the directory, record `job` (or check it matches the one recorded); returns the
        numbers of the parts already written by an earlier try of the same job."""
        self.root.mkdir(parents=True, exist_ok=True)
        recorded = self.root / JOB_FILE
        if recorded.exists():
            earlier = json.loads(recorded.read_text())
            if earlier != job:
                changed = sorted(key for key in {*job, *earlier} if job.get(key) != earlier.get(key))
                raise InvalidRequestError(
                    f"Invalid request: output {self.url} holds the parts of another {self.kind} job "
                    f"({', '.join(changed)} changed since they were written). Write to another output, or empty "
                    "this one to start over; parts are only reused by a retry of the same job."
                )
        else:
            self._write_atomically(recorded, json.dumps(job, indent=2, sort_keys=True) + "\n")
        return self.written_parts()

    def written_parts(self) -> set[int]:
        numbers = set()
        for child in self.root.iterdir():
            match = _PART_NAME.match(child.name)
            if match:
                numbers.add(int(match.group(1)))
        return numbers

    @staticmethod
    def part_name(number: int) -> str:
        return f"part-{number:06d}.{PART_FORMAT}"

    def write_part(self, number: int, rows: Iterable[dict[str, Any]]) -> None:
        """Part `number`: one JSON line per row, compact, in the rows' order."""
        lines = [json.dumps(row, separators=(",", ":")) for row in rows]
        self._write_atomically(self.root / self.part_name(number), "\n".join(lines) + "\n")

    def first_row(self, parts: set[int]) -> dict[str, Any] | None:
        """The first row of the lowest of `parts` (what a job all resumed reads its shape from)."""
        if not parts:
            return None
        with (self.root / self.part_name(min(parts))).open("r", encoding="utf-8") as stream:
            first = stream.readline()
        return json.loads(first) if first.strip() else None

    def read_part(self, number: int) -> Iterator[dict[str, Any]]:
        """The rows of part `number`, in order, read as a stream."""
        with (self.root / self.part_name(number)).open("r", encoding="utf-8") as stream:
            for line in iter(stream.readline, ""):
                if line.strip():
                    yield json.loads(line)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._write_atomically(self.root / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")

    def _write_atomically(self, target: Any, text: str) -> None:
        # A dot name: readers of the directory (and `written_parts`) skip it until it is renamed.
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            with temporary.open("w", encoding="utf-8") as out:
                out.write(text)
            temporary.rename(target)
        except BaseException:
            if temporary.exists():
                temporary.unlink()
            raise


class StoredJob:
    """One try of a job whose results go to `store`: `start()` records the job (or finds the parts
    an earlier try of the same job wrote), `pending()` skips the units already written (counted as
    skipped in `progress`), `write()` writes a unit's rows, and `manifest()` gives the manifest with
    the fields every job has. Part of `jobs/`: any request kind's job uses it the same way.

    :param started: the job's start (`time.monotonic()`), for `duration_seconds`.
    """

    def __init__(self, store: PartStore, progress: JobProgress, *, started: float) -> None:
        self.store = store
        self.progress = progress
        self.started = started
        self.written: set[int] = set()
        self.numbers: list[int] = []  # every unit's, in input order: the manifest's parts
        self.count = 0  # items read: the manifest's count

    def start(self, job: dict[str, Any]) -> None:
        self.written = self.store.start(job)

    def log_resume(self) -> None:
        if self.written:
            self.progress.log.info(
                "Resuming: %s parts already in %s are kept", f"{len(self.written):,}", self.store.url
            )

    def pending(self, units: Iterable[Batch]) -> Iterator[Batch]:
        """`units` less those written by an earlier try (not paid twice). Read by the workers, one
        at a time (the runner holds a lock around each unit)."""
        for unit in units:
            self.numbers.append(unit.number)
            self.count += len(unit.items)
            if unit.number in self.written:
                self.progress.skipped(len(unit.items))
                continue
            yield unit

    def write(self, number: int, rows: Iterable[dict[str, Any]]) -> None:
        self.store.write_part(number, rows)

    def manifest(self, model: str, **fields: Any) -> dict[str, Any]:
        """The manifest (written as `manifest.json`, returned to XCom): output, format, parts, count,
        the kind's `fields` (e.g. dimensions), model, usage, duration and the request counters."""
        progress = self.progress
        manifest = {
            "output": self.store.url,
            "format": PART_FORMAT,
            "parts": [self.store.part_name(number) for number in self.numbers],
            "count": self.count,
            **fields,
            "model": model,
            "usage": progress.usage(),
            "duration_seconds": round(time.monotonic() - self.started, 3),
            "resumed_parts": len(self.written & set(self.numbers)),
            "requests": progress.requests,
            "retries": progress.retries,
            "rate_limited": progress.rate_limited,
        }
        self.store.write_manifest(manifest)
        return manifest


class GroupedStoredJob(StoredJob):
    """A `StoredJob` whose units are single items (chat at volume: one request per item) and whose
    parts group `part_size` consecutive items: part `p` holds the rows of items `p * part_size` to
    `(p + 1) * part_size - 1`, in item order, and is committed when all of them are done, so
    100,000 items make 100 parts, not 100,000 files. Units are numbered by their item's index.
    A retried try skips every item of a committed part; the items of a part that was not complete
    are sent again.

    :param total: the number of items (read before the job starts): how many rows the last part has.
    """

    def __init__(self, store: PartStore, progress: JobProgress, *, started: float, part_size: int, total: int) -> None:
        super().__init__(store, progress, started=started)
        self.part_size = part_size
        self.total = total
        self._rows: dict[int, list[dict[str, Any]]] = {}  # rows of the parts not complete yet
        self._lock = threading.Lock()

    def part_of(self, unit: Batch) -> int:
        return unit.start // self.part_size

    def pending(self, units: Iterable[Batch]) -> Iterator[Batch]:
        for unit in units:
            part = self.part_of(unit)
            if not self.numbers or self.numbers[-1] != part:
                self.numbers.append(part)
            self.count += len(unit.items)
            if part in self.written:
                self.progress.skipped(len(unit.items))
                continue
            yield unit

    def write(self, number: int, rows: Iterable[dict[str, Any]]) -> None:
        """Keep the rows of item `number`; commit its part once every item of it is there."""
        part = number // self.part_size
        expected = min(self.part_size, self.total - part * self.part_size)
        with self._lock:
            held = self._rows.setdefault(part, [])
            held.extend(rows)
            if len(held) < expected:
                return
            del self._rows[part]
        self._commit(part, held)

    def flush(self) -> None:
        """Commit the parts still held: at the end of a job whose input had fewer items than
        counted before it started (the file changed under it)."""
        with self._lock:
            held, self._rows = self._rows, {}
        for part, rows in sorted(held.items()):
            self._commit(part, rows)

    def _commit(self, part: int, rows: list[dict[str, Any]]) -> None:
        self.store.write_part(part, sorted(rows, key=lambda row: row["item_index"]))


def _jsonl_object(url: str, number: int, line: str) -> dict[str, Any]:
    where = f"{url} line {number}"
    try:
        record = json.loads(line)
    except ValueError as error:
        raise InvalidRequestError(
            f"Invalid request: {where} is not JSON ({error}). input_file is JSON Lines (one object per "
            "line) unless its name ends with .txt (one text per line)."
        ) from None
    if not isinstance(record, dict):
        raise InvalidRequestError(f"Invalid request: {where} is a JSON {type(record).__name__}, not an object.")
    return record


def _jsonl_text(
    url: str, number: int, record: dict[str, Any], text_field: str, id_field: str | None
) -> tuple[Any, str]:
    where = f"{url} line {number}"
    text = record.get(text_field)
    if not isinstance(text, str):
        found = ", ".join(repr(key) for key in list(record)[:8])
        raise InvalidRequestError(
            f"Invalid request: {where} has no text in field {text_field!r} (text_field)"
            + (f"; it is {type(text).__name__}" if text_field in record else f"; its fields: {found}")
            + "."
        )
    return (record.get(id_field) if id_field else None), text


__all__ = [
    "JOB_FILE",
    "MANIFEST_FILE",
    "PART_FORMAT",
    "GroupedStoredJob",
    "PartStore",
    "StoredJob",
    "fingerprint",
    "fingerprint_file",
    "read_records",
    "read_texts",
]

"""Embedding inputs read from, and vectors written to, object storage: Airflow's ObjectStoragePath,
so file://, s3://, gcs://... with an Airflow connection.

Input (`read_texts`), streamed line by line, never held whole:
- `.txt`: one text per line; blank lines are skipped and a text's id is its line number (from 1);
- anything else is JSON Lines: one object per line, the text in `text_field`, the id (optional)
  in `id_field`.

Output (`PartStore`): a directory of parts, one per batch, named by the batch number
(`part-000012.jsonl`), each line `{"index": 768, "id": ..., "text_sha256": ..., "embedding": [...]}`.
A part is written under a temporary name starting with "." and renamed when complete, so a reader
(or a retried try) never sees half a part: a local rename is atomic, and on object stores the final
key appears in one piece. `_job.json` records what the parts were made from (model, batching, a
hash of the input); a retried try with the same job skips the parts already there, a different job
is refused. `manifest.json` is written last.

JSON Lines, not Parquet: pyarrow is in neither of the Airflow lines' constraints this provider is
tested with, and a 40 MB dependency for the output format alone is not worth it; every vector
database loader and DuckDB / pandas read JSON Lines directly.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.compat import object_storage_path
from ovh_ai_dagfactory.jobs.batches import Batch

PART_FORMAT = "jsonl"
JOB_FILE = "_job.json"
MANIFEST_FILE = "manifest.json"
_PART_NAME = re.compile(r"^part-(\d{6,})\.jsonl$")


def read_texts(
    url: str, *, text_field: str = "text", id_field: str | None = None, conn_id: str | None = None
) -> Iterator[tuple[Any, str]]:
    """`(id, text)` of each text of the file at `url`, in file order, read as a stream."""
    path = object_storage_path(url, conn_id)
    plain = path.name.lower().endswith(".txt")
    with path.open("r", encoding="utf-8") as stream:
        # readline, not iteration: Airflow 2.11's file wrapper is not iterable.
        for number, line in enumerate(iter(stream.readline, ""), start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if plain:
                yield number, line
                continue
            yield _jsonl_record(url, number, line, text_field, id_field)


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
    """The output directory of one embedding job. Thread-safe for distinct parts."""

    def __init__(self, url: str, conn_id: str | None = None) -> None:
        self.url = url
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
                    f"Invalid request: output {self.url} holds the parts of another embedding job "
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

    def write_part(self, batch: Batch, vectors: list[list[float]]) -> None:
        lines = []
        for offset, (text, vector) in enumerate(zip(batch.texts, vectors, strict=True)):
            row = {
                "index": batch.start + offset,
                "id": batch.ids[offset] if batch.ids is not None else None,
                "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "embedding": vector,
            }
            lines.append(json.dumps(row, separators=(",", ":")))
        self._write_atomically(self.root / self.part_name(batch.number), "\n".join(lines) + "\n")

    def dimensions(self, parts: set[int]) -> int | None:
        """The vector size, read from the first line of the lowest part (a job all resumed)."""
        if not parts:
            return None
        with (self.root / self.part_name(min(parts))).open("r", encoding="utf-8") as stream:
            first = stream.readline()
        return len(json.loads(first)["embedding"]) if first.strip() else None

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


def _jsonl_record(url: str, number: int, line: str, text_field: str, id_field: str | None) -> tuple[Any, str]:
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
    text = record.get(text_field)
    if not isinstance(text, str):
        found = ", ".join(repr(key) for key in list(record)[:8])
        raise InvalidRequestError(
            f"Invalid request: {where} has no text in field {text_field!r} (text_field)"
            + (f"; it is {type(text).__name__}" if text_field in record else f"; its fields: {found}")
            + "."
        )
    return (record.get(id_field) if id_field else None), text


__all__ = ["JOB_FILE", "MANIFEST_FILE", "PART_FORMAT", "PartStore", "fingerprint", "fingerprint_file", "read_texts"]

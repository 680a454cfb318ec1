"""A per-file cache of fully validated parse results, so DAG parsing pays validation only on change.

Airflow re-parses the loader file every `min_file_process_interval` (30 s), in a fresh process.
Full validation (YAML + JSON Schema + checks) costs about as much as building the DAG, so each
file's outcome — the `Pipeline`, or its `PipelineError`s — is stored once and reused while the
file's bytes are the same. The file is read once: those bytes are hashed and those same bytes are
validated, so an outcome is only ever stored under the digest of the bytes it was computed from
(a file rewritten meanwhile cannot poison the cache), and the check is never weaker than a full
validation. The cache lives in a directory named after a fingerprint of this package (version,
spec sources, schema, Python, entry format), so upgrading or editing the spec layer starts afresh.

Entries are data, not code: JSON written by `cache_codec` from the spec model's own dataclass fields,
so reading one can never run anything, and an entry that does not decode exactly (torn, foreign,
older format) is a miss. The directory must still be private to Airflow's user, since an entry
decides what a DAG does: it is created with mode 0700 and one owned or writable by someone else
is refused (the cache is then simply off).

Layout: `specs/<folder hash>/<shard key>-<path hash>.json`, one entry per pipeline file, holding its
owner path. The shard key is the one `pipeline_files.in_shard` uses, so a full load of one shard
can prune the entries of its own files that are gone with one directory listing, without reading
any entry and without touching the entries of other shards or other folders sharing the directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ovh_ai_dagfactory.factory import cache_codec as codec
from ovh_ai_dagfactory.factory.pipeline_files import shard_key
from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.model import Pipeline

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "OVH_AI_DAGFACTORY_CACHE_DIR"
#: Value of CACHE_DIR_ENV (or `cache_dir=`) that turns the cache off.
DISABLED = ("", "0", "off", "none", "false")
#: Written into every entry and into the directory fingerprint; 1 was pickle.
ENTRY_FORMAT = 2
#: A temporary file this old was left by a process killed mid-write (SIGKILL runs no cleanup).
STALE_TEMPORARY_SECONDS = 600

Outcome = Union[Pipeline, tuple[PipelineError, ...]]
_ERRORS = tuple[PipelineError, ...]


@dataclass(frozen=True)
class Parsed:
    """One file's outcome and whether it came from the cache."""

    path: str
    outcome: Outcome
    cached: bool

    @property
    def pipeline(self) -> Pipeline | None:
        return self.outcome if isinstance(self.outcome, Pipeline) else None

    @property
    def errors(self) -> tuple[PipelineError, ...]:
        return () if isinstance(self.outcome, Pipeline) else self.outcome


class SpecCache:
    """Parse pipeline files through an on-disk cache; `directory=None` means no cache."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0
        self._touched: dict[Path, set[str]] = {}  # entry folder → entry names used by this load

    @classmethod
    def default(cls, cache_dir: str | os.PathLike[str] | bool | None = None) -> SpecCache:
        """`cache_dir` argument, else $OVH_AI_DAGFACTORY_CACHE_DIR, else $AIRFLOW_HOME/.cache/...,
        else a per-user temporary directory; False (or 'off') disables the cache."""
        if cache_dir is False:
            return cls(None)
        chosen = cache_dir if isinstance(cache_dir, (str, os.PathLike)) else os.environ.get(CACHE_DIR_ENV)
        candidates: list[Path] = []
        if chosen is not None:
            if str(chosen).strip().lower() in DISABLED:
                return cls(None)
            candidates.append(Path(chosen))
        else:
            airflow_home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
            candidates.append(Path(airflow_home) / ".cache" / "ovh-ai-dagfactory")
            candidates.append(Path(tempfile.gettempdir()) / f"ovh-ai-dagfactory-{_uid()}")
        for root in candidates:
            directory = _private_directory(root, _fingerprint())
            if directory is not None:
                return cls(directory)
        return cls(None)

    def parse(self, path: str, folder: str | os.PathLike[str] | None = None) -> Parsed:
        """The file's outcome: from the cache when its bytes were seen before, else fully validated.

        `folder` is the pipelines folder the file was found in (it places the entry; default: the
        file's own folder). Never raises for a file's content: see `parse_pipeline_bytes`."""
        try:
            return self._parse(path, os.fspath(folder) if folder is not None else os.path.dirname(path))
        except Exception as exc:  # noqa: BLE001 - "one file never takes the loader down", even for our bugs
            from ovh_ai_dagfactory.spec.parse import internal_error

            log.exception("internal error of ovh-ai-dagfactory while reading %s", path)
            return Parsed(path, (internal_error(path, exc),), cached=False)

    def _parse(self, path: str, folder: str) -> Parsed:
        from ovh_ai_dagfactory.spec.parse import read_pipeline_bytes

        try:
            raw = read_pipeline_bytes(path)  # once: what is hashed below is exactly what is validated
        except PipelineInvalid as unreadable:  # missing, special file, too large: nothing to cache
            return Parsed(path, tuple(unreadable.errors), cached=False)
        if self.directory is None:
            return Parsed(path, _validate(raw, path), cached=False)
        digest = _digest(raw, path)
        entry = self._entry(path, folder)
        outcome = self._read(entry, path, digest)
        if outcome is not None:
            self.hits += 1
            return Parsed(path, outcome, cached=True)
        self.misses += 1
        outcome = _validate(raw, path)
        self._write(entry, path, digest, outcome)
        return Parsed(path, outcome, cached=False)

    def _entry(self, path: str, folder: str) -> Path:
        assert self.directory is not None
        entries = self.directory / "specs" / hashlib.blake2b(os.fsencode(folder), digest_size=8).hexdigest()
        name = f"{shard_key(path, folder):08x}-{hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest()}.json"
        self._touched.setdefault(entries, set()).add(name)
        return entries / name

    def _read(self, entry: Path, path: str, digest: str) -> Outcome | None:
        try:
            with open(entry, "rb") as handle:
                stored = json.loads(handle.read())
            if stored["format"] != ENTRY_FORMAT or stored["owner"] != path or stored["digest"] != digest:
                return None
            if "errors" in stored:
                return codec.decode(stored["errors"], _ERRORS)
            return codec.decode(stored["pipeline"], Pipeline)
        except Exception:  # noqa: BLE001 - absent, torn, foreign or old: a miss, never an error
            return None

    def _write(self, entry: Path, path: str, digest: str, outcome: Outcome) -> None:
        try:
            stored: dict[str, object] = {"format": ENTRY_FORMAT, "owner": path, "digest": digest}
            if isinstance(outcome, Pipeline):
                stored["pipeline"] = codec.encode(outcome, Pipeline)
            else:
                stored["errors"] = codec.encode(outcome, _ERRORS)
            data = json.dumps(stored, separators=(",", ":")).encode("utf-8")
        except codec.Unstorable as exc:  # e.g. a value JSON cannot hold exactly: correct, just not cached
            log.debug("pipeline cache: %s not cached: %s", path, exc)
            return
        _write_atomically(entry, data)

    def prune(self, folder: str | os.PathLike[str], shard: int | None = None, shards: int | None = None) -> int:
        """After a full load of `folder` (or of one shard of it): delete the entries of this folder
        and shard that this load did not use — their files are gone — and temporary files left by
        killed processes. Other shards' and other folders' entries are not looked at. Returns how
        many files were deleted."""
        if self.directory is None:
            return 0
        entries = self.directory / "specs" / hashlib.blake2b(os.fsencode(folder), digest_size=8).hexdigest()
        used = self._touched.get(entries, set())
        deleted = 0
        try:
            names = os.listdir(entries)
        except OSError:
            return 0
        for name in names:
            if name.endswith(".tmp"):
                stale = _older_than(entries / name, STALE_TEMPORARY_SECONDS)
            else:
                key, _, rest = name.partition("-")
                stale = name not in used and rest.endswith(".json") and _in_shard(key, shard, shards)
            if stale:
                try:
                    os.unlink(entries / name)
                    deleted += 1
                except OSError:
                    pass  # another process pruned it first, or it is not ours to delete
        return deleted

    # The worker fast path's index: dag_id → file, for pipelines whose dag_id is not their file name.
    def remember_dag_file(self, folder: str, dag_id: str, path: str) -> None:
        if self.directory is None:
            return
        entry = self._index_entry(folder, dag_id)
        try:
            if entry.exists() and os.fsdecode(entry.read_bytes()) == path:
                return
        except OSError:
            pass
        _write_atomically(entry, os.fsencode(path))

    def recall_dag_file(self, folder: str, dag_id: str) -> str | None:
        if self.directory is None:
            return None
        try:
            return os.fsdecode(self._index_entry(folder, dag_id).read_bytes()) or None
        except OSError:
            return None

    def forget_dag_file(self, folder: str, dag_id: str) -> None:
        """Drop an index entry that named a file which no longer holds the dag_id."""
        if self.directory is None:
            return
        try:
            os.unlink(self._index_entry(folder, dag_id))
        except OSError:
            pass

    def _index_entry(self, folder: str, dag_id: str) -> Path:
        key = hashlib.blake2b(os.fsencode(f"{folder}\0{dag_id}"), digest_size=16).hexdigest()
        assert self.directory is not None
        return self.directory / "dag-ids" / key


def _digest(raw: bytes, path: str) -> str:
    """The key of a file's outcome: its bytes, and the bytes of the files it names (an output_schema
    file), so that editing a schema file next to an unchanged pipeline is seen."""
    from ovh_ai_dagfactory.spec.output_schema import referenced_files
    from ovh_ai_dagfactory.spec.parse import read_pipeline_bytes

    digest = hashlib.blake2b(raw, digest_size=20)
    for other in referenced_files(raw, path):
        try:
            digest.update(b"\0" + os.fsencode(other) + b"\0" + read_pipeline_bytes(other))
        except PipelineInvalid:
            digest.update(b"\0" + os.fsencode(other) + b"\0unreadable")
    return digest.hexdigest()


def _validate(raw: bytes, path: str) -> Outcome:
    # Imported here: the JSON Schema machinery is only needed when a file changed.
    from ovh_ai_dagfactory.spec.parse import parse_pipeline_bytes

    try:
        return parse_pipeline_bytes(raw, path)
    except PipelineInvalid as invalid:
        return tuple(invalid.errors)


def _write_atomically(entry: Path, data: bytes) -> None:
    """Write aside, then rename (parsing runs in several processes at once; rename is atomic on
    POSIX). Whatever fails — a full disk, a timeout signal mid-write — leaves no temporary file.

    A cold load writes one entry per pipeline file, so this is kept to four system calls (create,
    write, close, rename): the folder is made once per process, and the temporary name is unique
    by process, token and counter (created exclusively) instead of mkstemp's random retries. File
    creation dominates a cold load's I/O (measured 0.55-0.65 ms per entry before, on a VM disk)."""
    temporary: str | None = None
    try:
        folder = str(entry.parent)
        if folder not in _FOLDERS_MADE:
            entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _FOLDERS_MADE.add(folder)
        temporary = f"{entry}.{os.getpid()}-{_TEMPORARY_TOKEN}-{next(_TEMPORARY_NUMBERS)}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; a short write is finished, not lost
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        os.replace(temporary, entry)
        temporary = None
    except OSError as exc:
        _FOLDERS_MADE.discard(str(entry.parent))  # removed meanwhile, say: made again next time
        log.debug("pipeline cache: cannot write %s: %s", entry, exc)
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


_FOLDERS_MADE: set[str] = set()
_TEMPORARY_NUMBERS = itertools.count()
_TEMPORARY_TOKEN = os.urandom(4).hex()  # with the pid: a reused pid never meets an old temporary file


def _in_shard(key: str, shard: int | None, shards: int | None) -> bool:
    try:
        value = int(key, 16)
    except ValueError:
        return False  # not an entry name of ours: left alone
    return not shards or shards <= 1 or value % shards == shard


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


_FINGERPRINT: str | None = None


def _fingerprint() -> str:
    """Changes when anything that decides a parse result changes: package version, spec sources
    (size and mtime, so an editable install under development is covered), schema, Python."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import ovh_ai_dagfactory
        from ovh_ai_dagfactory import spec

        parts = [ovh_ai_dagfactory.__version__, sys.version, f"entry format {ENTRY_FORMAT}"]
        spec_dir = Path(spec.__file__).parent
        package_dir = spec_dir.parent
        sources = sorted(spec_dir.glob("*.py")) + sorted(package_dir.glob("schemas/*.json"))
        sources += sorted(package_dir.parent.glob("schemas/*.json"))  # source checkout layout
        for source in sources:
            stat = source.stat()
            parts.append(f"{source.name}:{stat.st_size}:{stat.st_mtime_ns}")
        _FINGERPRINT = hashlib.blake2b("\n".join(parts).encode(), digest_size=10).hexdigest()
    return _FINGERPRINT


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "user"


def _private_directory(root: Path, name: str) -> Path | None:
    """`root/name`, created 0700, when both are ours; None when they cannot be used safely."""
    directory = root / name
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        if hasattr(os, "getuid"):
            for owned in (root, directory):
                stat = owned.stat()
                if stat.st_uid != os.getuid() or stat.st_mode & 0o022:
                    log.warning("pipeline cache: %s is not private to this user; cache off", owned)
                    return None
        return directory if os.access(directory, os.W_OK) else None
    except OSError:
        return None

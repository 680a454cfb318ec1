"""A per-file cache of fully validated parse results, so DAG parsing pays validation only on change.

Airflow re-parses the loader file every `min_file_process_interval` (30 s), in a fresh process.
Full validation (YAML + JSON Schema + checks) costs about as much as building the DAG, so each
file's outcome — the `Pipeline`, or its `PipelineError`s — is pickled once and reused while the
file's bytes are the same. The key is the file's content hash (not its mtime), so a result is
reused only for exactly the bytes it was computed from: the check is never weaker than a full
validation. The cache lives in a directory named after a fingerprint of this package (version,
spec sources, schema, Python), so upgrading or editing the spec layer starts a fresh one.

The directory must be private to Airflow's user (pickles are code): it is created with mode 0700
and a directory owned by someone else is refused (the cache is then simply off).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.model import Pipeline

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "OVH_AI_DAGFACTORY_CACHE_DIR"
#: Value of CACHE_DIR_ENV (or `cache_dir=`) that turns the cache off.
DISABLED = ("", "0", "off", "none", "false")

Outcome = Union[Pipeline, tuple[PipelineError, ...]]


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

    def parse(self, path: str) -> Parsed:
        """The file's outcome: from the cache when its bytes were seen before, else fully validated."""
        if self.directory is None:
            return Parsed(path, _validate(path), cached=False)
        try:
            raw = Path(path).read_bytes()
        except OSError:
            return Parsed(path, _validate(path), cached=False)  # the parser words the error
        digest = hashlib.blake2b(raw, digest_size=20).hexdigest()
        entry = self.directory / "specs" / (hashlib.blake2b(path.encode(), digest_size=16).hexdigest() + ".pickle")
        outcome = self._read(entry, digest)
        if outcome is not None:
            self.hits += 1
            return Parsed(path, outcome, cached=True)
        self.misses += 1
        outcome = _validate(path)
        self._write(entry, (digest, outcome))
        return Parsed(path, outcome, cached=False)

    def _read(self, entry: Path, digest: str) -> Outcome | None:
        try:
            with open(entry, "rb") as handle:
                stored_digest, outcome = pickle.load(handle)
        except FileNotFoundError:
            return None
        except Exception:  # a torn or foreign entry is a miss, never an error: we recompute it
            return None
        return outcome if stored_digest == digest else None

    def _write(self, entry: Path, value: object) -> None:
        # Parsing runs in several processes at once: write aside, then rename (atomic on POSIX).
        try:
            entry.parent.mkdir(mode=0o700, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, entry)
        except OSError as exc:
            log.debug("pipeline cache: cannot write %s: %s", entry, exc)

    # The worker fast path's index: dag_id → file, for pipelines whose dag_id is not their file name.
    def remember_dag_file(self, folder: str, dag_id: str, path: str) -> None:
        if self.directory is None:
            return
        entry = self._index_entry(folder, dag_id)
        try:
            if entry.exists() and entry.read_text("utf-8") == path:
                return
            entry.parent.mkdir(mode=0o700, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(path)
            os.replace(temporary, entry)
        except OSError as exc:
            log.debug("pipeline cache: cannot write %s: %s", entry, exc)

    def recall_dag_file(self, folder: str, dag_id: str) -> str | None:
        if self.directory is None:
            return None
        try:
            return self._index_entry(folder, dag_id).read_text("utf-8") or None
        except OSError:
            return None

    def _index_entry(self, folder: str, dag_id: str) -> Path:
        key = hashlib.blake2b(f"{folder}\0{dag_id}".encode(), digest_size=16).hexdigest()
        assert self.directory is not None
        return self.directory / "dag-ids" / key


def _validate(path: str) -> Outcome:
    # Imported here: the JSON Schema machinery is only needed when a file changed.
    from ovh_ai_dagfactory.spec.parse import parse_pipeline_file

    try:
        return parse_pipeline_file(path)
    except PipelineInvalid as invalid:
        return tuple(invalid.errors)


_FINGERPRINT: str | None = None


def _fingerprint() -> str:
    """Changes when anything that decides a parse result changes: package version, spec sources
    (size and mtime, so an editable install under development is covered), schema, Python."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import ovh_ai_dagfactory
        from ovh_ai_dagfactory import spec

        parts = [ovh_ai_dagfactory.__version__, sys.version, str(pickle.HIGHEST_PROTOCOL)]
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

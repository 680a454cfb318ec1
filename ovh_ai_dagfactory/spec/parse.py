"""The spec layer's public API: pipeline files in, `Pipeline` objects or `PipelineInvalid` out.

    YAML text ──► yaml_loader (safe, positions) ──► schema (JSON Schema) ──► checks (graph, Jinja,
    ids, dates) ──► convert (typed objects, defaults merged)

Every user mistake becomes a PipelineError with a 1-based position; all of a file's errors are
raised together. No Airflow, no openai.
"""

from __future__ import annotations

import gc
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path as FilePath

from ovh_ai_dagfactory.spec.checks import PipelineChecks
from ovh_ai_dagfactory.spec.convert import to_pipeline
from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.model import Pipeline
from ovh_ai_dagfactory.spec.schema import schema_errors
from ovh_ai_dagfactory.spec.yaml_loader import load

PIPELINE_SUFFIXES = (".yaml", ".yml")


#: Largest pipeline file read (bytes); a real pipeline is a few KiB. Override with the environment
#: variable below (bytes, e.g. 4194304) for unusually large generated pipelines.
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
MAX_FILE_BYTES_ENV = "OVH_AI_DAGFACTORY_MAX_FILE_BYTES"

log = logging.getLogger(__name__)


def parse_pipeline_file(path: str | os.PathLike[str]) -> Pipeline:
    """Read and parse one pipeline file."""
    source_file = os.fspath(path)
    return parse_pipeline_bytes(read_pipeline_bytes(source_file), source_file)


def max_file_bytes() -> int:
    """The size cap: $OVH_AI_DAGFACTORY_MAX_FILE_BYTES when it is a positive integer, else 1 MiB."""
    text = os.environ.get(MAX_FILE_BYTES_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_FILE_BYTES


def read_pipeline_bytes(source_file: str, max_bytes: int | None = None) -> bytes:
    """The file's bytes, read once; PipelineInvalid (at 1:1) for anything that is not a regular
    file of at most `max_bytes` (default `max_file_bytes()`).

    The check is made on the opened descriptor, not on the path (no check-then-open race), and the
    open never blocks: a FIFO or a device named *.yaml is refused at once instead of hanging the
    loader, and /dev/zero cannot be read into memory.
    """
    limit = max_file_bytes() if max_bytes is None else max_bytes
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(source_file, flags)
    except OSError as exc:
        raise _unreadable(source_file, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise _unreadable(
                source_file,
                f"not a regular file ({_file_kind(status.st_mode)}); only regular files are read as pipelines",
            )
        if status.st_size > limit:
            raise _too_big(source_file, status.st_size, limit)
        chunks = []
        size = 0
        while True:  # read to the end even if the file grew since fstat, but never past the cap
            chunk = os.read(descriptor, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _too_big(source_file, size, limit)
        return b"".join(chunks)
    except OSError as exc:
        raise _unreadable(source_file, f"cannot read the file: {exc.strerror or exc}") from None
    finally:
        os.close(descriptor)


def _unreadable(source_file: str, message: str) -> PipelineInvalid:
    return PipelineInvalid([PipelineError(source_file, 1, 1, message)])


def _too_big(source_file: str, size: int, limit: int) -> PipelineInvalid:
    return PipelineInvalid(
        [
            PipelineError(
                source_file,
                1,
                1,
                f"the file is larger than the limit for a pipeline file ({size} bytes read, limit {limit} bytes)",
                f"split it into several pipelines, or raise the limit with {MAX_FILE_BYTES_ENV}=<bytes>",
            )
        ]
    )


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def decode_pipeline_bytes(raw: bytes, source_file: str) -> str:
    """The bytes as text; PipelineInvalid when they are not UTF-8 (with the bad byte's position)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise PipelineInvalid(
            [
                PipelineError(
                    source_file,
                    line,
                    column,
                    f"the file is not UTF-8 text (byte 0x{raw[start]:02x})",
                    "save the file as UTF-8",
                )
            ]
        ) from None


def parse_pipeline_bytes(raw: bytes, source_file: str) -> Pipeline:
    """Parse one pipeline from a file's bytes (exactly these bytes: callers that hash them, such as
    the loader's cache, get the outcome of what they hashed)."""
    return parse_pipeline_text(decode_pipeline_bytes(raw, source_file), source_file)


def parse_pipeline_text(text: str, source_file: str) -> Pipeline:
    """Parse one pipeline from `text`; `source_file` names it in errors and gives the default dag_id.

    Never raises anything but PipelineInvalid for any text: an exception we did not foresee becomes
    an internal error at 1:1 (with its type, logged with its traceback) rather than a crash of the
    CLI or of the DAG loader.
    """
    try:
        return _parse_text(text, source_file)
    except PipelineInvalid:
        raise
    except RecursionError:
        raise PipelineInvalid(
            [
                PipelineError(
                    source_file,
                    1,
                    1,
                    "the file nests values or templates too deeply to be read",
                    "flatten the deepest structure (lists in lists, or Jinja blocks inside each other)",
                )
            ]
        ) from None
    except Exception as exc:  # noqa: BLE001 - the last-resort guard of the "never raises" promise
        log.error("internal error of ovh-ai-dagfactory while parsing %s", source_file, exc_info=True)
        raise PipelineInvalid([internal_error(source_file, exc)]) from None


def internal_error(source_file: str, exc: BaseException, during: str = "reading this pipeline") -> PipelineError:
    """An error of ours, not the user's (the parser's, the loader's or a command's last-resort guard):
    said plainly, at 1:1, with the exception and a request to report it."""
    return PipelineError(
        source_file,
        1,
        1,
        f"internal error of ovh-ai-dagfactory ({type(exc).__name__}: {str(exc)[:200]}) while {during}",
        "this is a bug in ovh-ai-dagfactory, not in your file: please report it with the file attached "
        "and the traceback from the log",
        internal=True,
    )


def _parse_text(text: str, source_file: str) -> Pipeline:
    document = load(text, source_file)
    data = document.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise PipelineInvalid(
            [
                PipelineError(
                    source_file, 1, 1, f"a pipeline file must be a mapping of keys (dag_id, steps, ...), not {kind}"
                )
            ]
        )
    positions = document.positions
    errors = schema_errors(data, positions, source_file)
    errors.extend(PipelineChecks(data, positions, source_file).errors())
    if errors:
        raise PipelineInvalid(_sorted_unique(errors))
    return to_pipeline(data, positions, source_file)  # checked data that does not convert: our bug (the guard)


def _sorted_unique(errors: list[PipelineError]) -> list[PipelineError]:
    unique = dict.fromkeys(errors)  # frozen dataclasses: the same finding from two angles counts once
    return sorted(unique, key=lambda error: (error.line, error.column))


@dataclass
class ValidationReport:
    """What `validate_paths` found: the pipelines that parsed, and every error in every file."""

    files: list[str] = field(default_factory=list)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: list[PipelineError] = field(default_factory=list)

    @property
    def files_checked(self) -> int:
        return len(self.files)

    @property
    def invalid_files(self) -> list[str]:
        bad = {error.file for error in self.errors}
        return [path for path in self.files if path in bad]

    @property
    def ok(self) -> bool:
        return not self.errors


class PathNotFound(Exception):
    """A path given to validate does not exist: a usage error, not a pipeline error."""


def pipeline_files(paths: list[str]) -> list[str]:
    """Files as given, folders expanded to their *.yaml / *.yml files (recursive, sorted).

    Hidden folders and files (`.git`, `.github`, ...) inside a folder are skipped: they hold tool
    configuration, not pipelines. Name such a file explicitly to check it.
    """
    found: list[str] = []
    for path in paths:
        candidate = FilePath(path)
        if candidate.is_dir():
            found.extend(pipeline_files_in(path))
        elif candidate.exists():
            found.append(path)
        else:
            raise PathNotFound(path)
    return list(dict.fromkeys(found))


def pipeline_files_in(folder: str | os.PathLike[str]) -> list[str]:
    """Every *.yaml / *.yml file under `folder` (recursive, sorted), hidden folders and files skipped.

    Also the DAG loader's listing on every parse, hence `os.walk` pruning hidden folders rather
    than walking them."""
    found: list[str] = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(
            os.path.join(directory, name)
            for name in files
            if name.lower().endswith(PIPELINE_SUFFIXES) and not name.startswith(".")
        )
    return sorted(found)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while many files are read (`validate_paths`, the DAG
    loader), back as it was afterwards.

    Reading many files allocates a lot and frees little cyclic garbage: parse trees (freed by
    reference counting as soon as a file is read) and what is kept (pipelines, DAGs). Each
    allocation burst triggers collections, and once results pile up every full collection walks all
    of them, to find nothing: measured, a 10-step file's YAML took 3.6x longer with 500 DAGs' worth
    of live objects around."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def validate_paths(paths: list[str]) -> ValidationReport:
    """Parse every pipeline under `paths`, then check them together (dag_id unique across files).

    Raises PathNotFound for a path that does not exist.
    """
    report = ValidationReport(files=pipeline_files(paths))
    with collector_paused():
        for path in report.files:
            try:
                report.pipelines[path] = parse_pipeline_file(path)
            except PipelineInvalid as invalid:
                report.errors.extend(invalid.errors)
    report.errors.extend(duplicate_dag_ids(report.pipelines).values())
    return report


def duplicate_dag_ids(pipelines: Mapping[str, Pipeline]) -> dict[str, PipelineError]:
    """The one rule for dag_ids used by more than one file, shared by `validate` and the loader: every
    such file is refused (at its `dag_id:`), since neither can be chosen safely — Airflow's workers
    must find the same file the scheduler used. Keyed by path."""
    by_dag_id: dict[str, list[str]] = {}
    for path, pipeline in pipelines.items():
        by_dag_id.setdefault(pipeline.dag_id, []).append(path)
    errors: dict[str, PipelineError] = {}
    for dag_id, paths in by_dag_id.items():
        for path in paths if len(paths) > 1 else ():
            others = ", ".join(os.path.basename(other) for other in paths if other != path)
            position = pipelines[path].dag_id_position
            errors[path] = PipelineError(
                path,
                position.line,
                position.column,
                f"dag_id '{dag_id}' is also used by {others}",
                "each pipeline needs its own dag_id (it defaults to the file name)",
            )
    return errors

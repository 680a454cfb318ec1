"""The spec layer's public API: pipeline files in, `Pipeline` objects or `PipelineInvalid` out.

    YAML text ──► yaml_loader (safe, positions) ──► schema (JSON Schema) ──► checks (graph, Jinja,
    ids, dates) ──► convert (typed objects, defaults merged)

Every user mistake becomes a PipelineError with a 1-based position; all of a file's errors are
raised together. No Airflow, no openai.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path as FilePath

from ovh_ai_dagfactory.spec.checks import PipelineChecks
from ovh_ai_dagfactory.spec.convert import to_pipeline
from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.model import Pipeline
from ovh_ai_dagfactory.spec.schema import schema_errors
from ovh_ai_dagfactory.spec.yaml_loader import load

PIPELINE_SUFFIXES = (".yaml", ".yml")


def parse_pipeline_file(path: str | os.PathLike[str], *, validate_schema: bool = True) -> Pipeline:
    """Read and parse one pipeline file. See `parse_pipeline_text` for `validate_schema`."""
    source_file = os.fspath(path)
    return parse_pipeline_text(read_pipeline_text(source_file), source_file, validate_schema=validate_schema)


def read_pipeline_text(source_file: str) -> str:
    """The file as text; PipelineInvalid when it cannot be read or is not UTF-8 (with the bad byte's position)."""
    try:
        raw = FilePath(source_file).read_bytes()
    except OSError as exc:
        raise PipelineInvalid([PipelineError(source_file, 1, 1, f"cannot read the file: {exc.strerror or exc}")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise PipelineInvalid([PipelineError(
            source_file, line, column, f"the file is not UTF-8 text (byte 0x{raw[start]:02x})",
            "save the file as UTF-8")]) from None


def parse_pipeline_text(text: str, source_file: str, *, validate_schema: bool = True) -> Pipeline:
    """Parse one pipeline from `text`; `source_file` names it in errors and gives the default dag_id.

    `validate_schema=False` is the loader's hot path for content it has already seen validate (it
    owns that cache, keyed by content hash): the JSON Schema pass is skipped, the semantic checks
    still run. Should the content not be valid after all, the full validation runs and reports it.
    """
    document = load(text, source_file)
    data = document.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise PipelineInvalid([PipelineError(
            source_file, 1, 1, f"a pipeline file must be a mapping of keys (dag_id, steps, ...), not {kind}")])
    positions = document.positions
    errors = schema_errors(data, positions, source_file) if validate_schema else []
    errors.extend(PipelineChecks(data, positions, source_file).errors())
    if errors:
        raise PipelineInvalid(_sorted_unique(errors))
    try:
        return to_pipeline(data, positions, source_file)
    except (KeyError, TypeError, ValueError, AttributeError):
        if validate_schema:
            raise  # validated data that does not convert is our bug: let it surface
        return parse_pipeline_text(text, source_file, validate_schema=True)


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

    def errors_for(self, path: str) -> list[PipelineError]:
        return [error for error in self.errors if error.file == path]


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
            os.path.join(directory, name) for name in files
            if name.lower().endswith(PIPELINE_SUFFIXES) and not name.startswith(".")
        )
    return sorted(found)


def validate_paths(paths: list[str], *, validate_schema: bool = True) -> ValidationReport:
    """Parse every pipeline under `paths`, then check them together (dag_id unique across files).

    Raises PathNotFound for a path that does not exist.
    """
    report = ValidationReport(files=pipeline_files(paths))
    for path in report.files:
        try:
            report.pipelines[path] = parse_pipeline_file(path, validate_schema=validate_schema)
        except PipelineInvalid as invalid:
            report.errors.extend(invalid.errors)
    report.errors.extend(duplicate_dag_ids(report.pipelines))
    return report


def duplicate_dag_ids(pipelines: dict[str, Pipeline]) -> list[PipelineError]:
    """An error at each later file whose dag_id an earlier file already uses."""
    first_seen: dict[str, str] = {}
    errors = []
    for path, pipeline in pipelines.items():
        first = first_seen.setdefault(pipeline.dag_id, path)
        if first != path:
            position = pipeline.dag_id_position
            errors.append(PipelineError(
                path, position.line, position.column, f"dag_id '{pipeline.dag_id}' is already used by {first}",
                "each pipeline needs its own dag_id (it defaults to the file name)"))
    return errors


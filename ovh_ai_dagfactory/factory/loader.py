"""`load_pipelines`: the one call a DAG-folder file makes to turn a folder of pipelines into DAGs.

    # airflow DAG loader: builds one DAG per pipeline file (ovh-ai-dagfactory)
    from ovh_ai_dagfactory import load_pipelines
    load_pipelines("/path/to/pipelines", globals())

Each valid pipeline becomes a DAG placed in the caller's module globals, where Airflow finds it.
A broken file never hides the others: it is rejected with its FILE:LINE:COL errors, which Airflow
shows as that file's import error (see `import_errors`). On a worker, Airflow's parsing context
names the one DAG a task needs, and only that pipeline is read and built.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovh_ai_dagfactory.factory.cache import Parsed, SpecCache
from ovh_ai_dagfactory.factory.import_errors import format_errors, importing_dagbag, report_to_dagbag
from ovh_ai_dagfactory.factory.pipeline_files import candidates_for_dag_id, in_shard, resolve_folder
from ovh_ai_dagfactory.spec.checks import default_dag_id
from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.model import Pipeline
from ovh_ai_dagfactory.spec.parse import collector_paused, duplicate_dag_ids, internal_error, pipeline_files_in

log = logging.getLogger(__name__)


class PipelineFolderNotFound(FileNotFoundError):
    """The pipelines folder does not exist (raised: Airflow shows it as the loader file's import error)."""


@dataclass
class LoadResult:
    """What one `load_pipelines` call loaded and what it rejected."""

    folder: Path
    loaded: dict[str, str] = field(default_factory=dict)  # dag_id → pipeline file
    rejected: dict[str, tuple[PipelineError, ...]] = field(default_factory=dict)  # file → its errors
    dags: dict[str, Any] = field(default_factory=dict)  # dag_id → DAG
    only_dag_id: str | None = None  # set when Airflow's parsing context asked for a single DAG
    cache_hits: int = 0
    cache_misses: int = 0
    reported_to_airflow: bool = False  # rejected files filed as import errors in Airflow's DagBag

    @property
    def dag_ids(self) -> list[str]:
        return list(self.loaded)

    def errors(self) -> list[PipelineError]:
        return [error for errors in self.rejected.values() for error in errors]


def load_pipelines(
    folder: str | os.PathLike[str] | None = None,
    namespace: MutableMapping[str, Any] | None = None,
    *,
    shard: int | None = None,
    shards: int | None = None,
    cache_dir: str | os.PathLike[str] | bool | None = None,
) -> LoadResult:
    """Build a DAG for every pipeline file under `folder` into `namespace` (the caller's globals()).

    folder: default $OVH_AI_DAGFACTORY_PIPELINES_FOLDER, else `pipelines/` next to the calling file.
    shard, shards: load only the files of shard `shard` (0-based) of `shards`, so a very large
        folder can be split across several loader files (each has its own import timeout).
    cache_dir: where validated parse results are kept (see `cache`); False turns the cache off.
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    only_dag_id = _requested_dag_id()
    # A full load reads and builds many files: the collector is paused meanwhile (collector_paused
    # says why). A task run builds one DAG, which gives a pause nothing to save.
    with nullcontext() if only_dag_id else collector_paused():
        return _load(folder, namespace, shard, shards, cache_dir, only_dag_id)


def _load(
    folder: str | os.PathLike[str] | None,
    namespace: MutableMapping[str, Any],
    shard: int | None,
    shards: int | None,
    cache_dir: str | os.PathLike[str] | bool | None,
    only_dag_id: str | None,
) -> LoadResult:
    _check_shard(shard, shards)
    pipelines_folder = resolve_folder(folder, namespace).absolute()
    if not pipelines_folder.is_dir():
        raise PipelineFolderNotFound(
            f"pipelines folder not found: {pipelines_folder} (pass the folder to load_pipelines(), "
            f"or set OVH_AI_DAGFACTORY_PIPELINES_FOLDER)"
        )
    loader_file = namespace.get("__file__")
    cache = SpecCache.default(cache_dir)
    result = LoadResult(folder=pipelines_folder, only_dag_id=only_dag_id)
    dagbag = importing_dagbag()
    builder = _Builder(result, namespace, loader_file, pipelines_folder, dagbag)

    if result.only_dag_id:
        _load_one(result.only_dag_id, pipelines_folder, shard, shards, cache, builder)
    else:
        files = [
            path for path in pipeline_files_in(pipelines_folder) if in_shard(path, pipelines_folder, shard, shards)
        ]
        parsed = [cache.parse(path, pipelines_folder) for path in files]
        _reject_duplicate_dag_ids(parsed, result)
        for item in parsed:
            if item.pipeline is not None and item.path not in result.rejected:
                builder.build(item.pipeline, item.path)
            elif item.errors:
                result.rejected[item.path] = item.errors
            if item.pipeline is not None and not item.cached:
                _index_dag_file(cache, pipelines_folder, item)
        cache.prune(pipelines_folder, shard, shards)
        for path, errors in result.rejected.items():
            log.warning("pipeline rejected: %s\n%s", path, format_errors(errors))
        if dagbag is not None:
            report_to_dagbag(result.rejected, files, dagbag)
            result.reported_to_airflow = True

    result.cache_hits, result.cache_misses = cache.hits, cache.misses
    return result


class _Builder:
    """Builds DAGs into the namespace. A pipeline Airflow would refuse is rejected with a positioned
    error; an unexpected exception (a bug of ours) rejects the file as an internal error: neither
    is raised, since Airflow would then drop every DAG of the loader file."""

    def __init__(
        self,
        result: LoadResult,
        namespace: MutableMapping[str, Any],
        loader_file: str | None,
        folder: Path,
        dagbag: Any | None,
    ) -> None:
        self.result = result
        self.namespace = namespace
        self.loader_file = loader_file
        self.dagbag = dagbag
        self.label_base = os.path.dirname(os.path.abspath(loader_file)) if loader_file else str(folder.parent)

    def build(self, pipeline: Pipeline, path: str) -> None:
        from ovh_ai_dagfactory.factory.builder import SkippedByPolicy, build_checked_dag

        elsewhere = self._dag_id_taken_elsewhere(pipeline.dag_id)
        if elsewhere:
            position = pipeline.dag_id_position
            self.result.rejected[path] = (
                PipelineError(
                    path,
                    position.line,
                    position.column,
                    f"dag_id '{pipeline.dag_id}' is already used by {elsewhere}",
                    "each DAG needs its own dag_id (it defaults to the pipeline file's name)",
                ),
            )
            return
        try:
            dag = build_checked_dag(pipeline, fileloc=self.loader_file, source_label=self._label(path))
        except PipelineInvalid as refused:  # Airflow's own checks: the user's to fix, at its position
            self.result.rejected[path] = tuple(refused.errors)
            return
        except SkippedByPolicy as skipped:
            log.info("pipeline %s skipped by the cluster policy: %s", path, skipped)
            return
        except Exception as exc:  # noqa: BLE001 - a bug of ours: reported as such, never raised
            log.exception("internal error of ovh-ai-dagfactory while building the DAG of %s", path)
            self.result.rejected[path] = (internal_error(path, exc, "building the DAG of this pipeline"),)
            return
        # Keyed by a prefix so a dag_id never shadows a name of the loader file (like load_pipelines).
        self.namespace[f"pipeline__{pipeline.dag_id}"] = dag
        self.result.loaded[pipeline.dag_id] = path
        self.result.dags[pipeline.dag_id] = dag

    def _dag_id_taken_elsewhere(self, dag_id: str) -> str | None:
        """The other DAG file of the importing DagBag that already holds `dag_id` (Airflow would
        refuse ours with AirflowDagDuplicatedIdException, filed under the loader file)."""
        dags = getattr(self.dagbag, "dags", None)
        existing = dags.get(dag_id) if isinstance(dags, dict) else None
        fileloc = getattr(existing, "fileloc", None)
        return fileloc if existing is not None and fileloc != self.loader_file else None

    def _label(self, path: str) -> str:
        # String work only: resolving symlinks costs a syscall per path component, per DAG.
        if path.startswith(self.label_base + os.sep):
            return path[len(self.label_base) + 1 :].replace(os.sep, "/")
        return os.path.basename(path)


def _load_one(
    dag_id: str, folder: Path, shard: int | None, shards: int | None, cache: SpecCache, builder: _Builder
) -> None:
    """A task run: find and build only `dag_id` (Airflow builds nothing else for the task)."""
    indexed = cache.recall_dag_file(str(folder), dag_id)
    for path in candidates_for_dag_id(folder, dag_id, indexed):
        if not in_shard(path, folder, shard, shards):
            continue
        pipeline = cache.parse(path, folder).pipeline
        if pipeline is not None and pipeline.dag_id == dag_id:
            builder.build(pipeline, path)
            return
        if path == indexed:
            cache.forget_dag_file(str(folder), dag_id)  # the file moved on: the scan finds it again


def _reject_duplicate_dag_ids(parsed: list[Parsed], result: LoadResult) -> None:
    """The spec's one rule (as `validate` applies it): every file sharing a dag_id is rejected."""
    pipelines = {item.path: item.pipeline for item in parsed if item.pipeline is not None}
    for path, error in duplicate_dag_ids(pipelines).items():
        result.rejected[path] = (error,)


def _index_dag_file(cache: SpecCache, folder: Path, item: Parsed) -> None:
    """Remember where a dag_id lives when its file name (at the top of the folder) does not say."""
    assert item.pipeline is not None
    at_top = os.path.dirname(item.path) == str(folder)
    if not (at_top and default_dag_id(item.path) == item.pipeline.dag_id):
        cache.remember_dag_file(str(folder), item.pipeline.dag_id, item.path)


def _requested_dag_id() -> str | None:
    from ovh_ai_dagfactory.compat import get_parsing_context

    return get_parsing_context().dag_id or None


def _check_shard(shard: int | None, shards: int | None) -> None:
    if shards is None and shard is None:
        return
    if not isinstance(shards, int) or not isinstance(shard, int) or shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"load_pipelines: shard must be in 0..shards-1 with shards >= 1 (got {shard}/{shards})")

"""Which pipeline files a loader call owns: the folder's *.yaml/*.yml files, its shard of them, and
— for a task run on a worker — the few files that may declare one dag_id.

Sharding lets one folder be split across several loader files, each parsed by Airflow within its
own `dagbag_import_timeout`; a file's shard comes from a stable hash of its path relative to the
folder, so adding a file never moves the others.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ovh_ai_dagfactory.spec.checks import default_dag_id
from ovh_ai_dagfactory.spec.errors import PipelineInvalid
from ovh_ai_dagfactory.spec.parse import PIPELINE_SUFFIXES, pipeline_files_in, read_pipeline_bytes

FOLDER_ENV = "OVH_AI_DAGFACTORY_PIPELINES_FOLDER"
DEFAULT_FOLDER_NAME = "pipelines"

# A top-level `dag_id:` line (no indentation); the real parse confirms any file this finds.
_DAG_ID_LINE = re.compile(r"""^dag_id[ \t]*:[ \t]*["']?([\w.-]+)["']?[ \t]*(?:#.*)?$""", re.MULTILINE)


def resolve_folder(folder: str | os.PathLike[str] | None, namespace: Mapping[str, Any]) -> Path:
    """The folder argument; else $OVH_AI_DAGFACTORY_PIPELINES_FOLDER; else `pipelines/` next to the
    loader file (inside the DAG folder, so it ships with the DAGs: git-sync, images, bundles)."""
    if folder is not None:
        return Path(folder)
    if os.environ.get(FOLDER_ENV):
        return Path(os.environ[FOLDER_ENV])
    loader_file = namespace.get("__file__")
    # Absolute, symlinks kept: git-sync publishes each revision behind a symlink (repo -> .worktrees/<rev>),
    # and resolving it would make every sync a new folder to the validation cache (all misses, and the
    # previous revision's entries never pruned).
    base = Path(os.path.abspath(loader_file)).parent if loader_file else Path.cwd()
    return base / DEFAULT_FOLDER_NAME


def in_shard(path: str, folder: Path, shard: int | None, shards: int | None) -> bool:
    if not shards or shards <= 1:
        return True
    return shard_key(path, folder) % shards == shard


def shard_key(path: str, folder: str | os.PathLike[str]) -> int:
    """A stable number for the file's path relative to the folder: its shard is this modulo shards
    (the validation cache names entries by it, so one shard can prune its own)."""
    relative = os.path.relpath(path, folder).replace(os.sep, "/")
    return zlib.crc32(relative.encode("utf-8", "surrogateescape"))


def candidates_for_dag_id(folder: Path, dag_id: str, indexed: str | None) -> Iterator[str]:
    """Files that may hold `dag_id`, cheapest first: `<folder>/<dag_id>.yaml|.yml` (the default
    dag_id is the file name), then the index entry, then — only if those fail — a scan of the
    folder for a matching file name or a top-level `dag_id:` line. Each is confirmed by parsing."""
    seen: set[str] = set()
    for suffix in PIPELINE_SUFFIXES:
        path = str(folder / f"{dag_id}{suffix}")
        if os.path.isfile(path):
            seen.add(path)
            yield path
    if indexed and indexed not in seen and os.path.isfile(indexed):
        seen.add(indexed)
        yield indexed
    for path in pipeline_files_in(folder):
        if path in seen:
            continue
        if default_dag_id(path) == dag_id or dag_id in _declared_dag_ids(path):
            seen.add(path)
            yield path


def _declared_dag_ids(path: str) -> set[str]:
    # The parser's own reader: a FIFO or a device named *.yaml is refused at once, never waited on.
    try:
        raw = read_pipeline_bytes(path)
    except PipelineInvalid:
        return set()
    return set(_DAG_ID_LINE.findall(raw.decode("utf-8", errors="replace")))

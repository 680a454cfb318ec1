"""The validation cache: JSON data read back exactly (never code), the outcome of exactly the bytes
it hashed, no temporary file left by a failed write, a torn/foreign/old entry a miss, and entries
of deleted files pruned by the load that owns them — without touching other shards' entries."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import pytest
from conftest import REPO_ROOT

from ovh_ai_dagfactory import load_pipelines
from ovh_ai_dagfactory.factory import cache_codec
from ovh_ai_dagfactory.factory.cache import SpecCache
from ovh_ai_dagfactory.spec.errors import PipelineInvalid
from ovh_ai_dagfactory.spec.parse import parse_pipeline_file
from tests.factory.conftest import BROKEN, EXAMPLES, chat_pipeline


def _entries(cache_dir: Path) -> dict[str, dict]:
    """owner path → stored entry, for every entry under the cache directory."""
    stored = (json.loads(path.read_text()) for path in cache_dir.rglob("*.json"))
    return {entry["owner"]: entry for entry in stored}


def test_entries_are_json_data_that_read_back_exactly(tmp_path):
    cache_dir = tmp_path / "cache"
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for example in EXAMPLES.glob("*.yaml"):
        (folder / example.name).write_bytes(example.read_bytes())
    (folder / "broken.yaml").write_text(BROKEN)
    cold = load_pipelines(folder, {}, cache_dir=cache_dir)
    warm = load_pipelines(folder, {}, cache_dir=cache_dir)
    assert warm.cache_misses == 0 and warm.cache_hits == cold.cache_misses == len(list(folder.iterdir()))
    assert warm.errors() == cold.errors() and (warm.errors()[0].line, warm.errors()[0].column) == (7, 18)
    cache = SpecCache.default(cache_dir)
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "broken.yaml":
            continue
        parsed = cache.parse(str(path), folder)
        assert parsed.cached and parsed.pipeline == parse_pipeline_file(path)
        assert [type(step) for step in parsed.pipeline.steps] == [
            type(step) for step in parse_pipeline_file(path).steps
        ]
    entries = _entries(cache_dir)
    assert set(entries) == {str(path) for path in folder.iterdir()}
    assert all(entry["format"] == 2 for entry in entries.values())


def test_an_entry_is_never_run_as_code(write_pipeline, tmp_path):
    path = write_pipeline("alpha.yaml", chat_pipeline())
    cache_dir = tmp_path / "cache"
    load_pipelines(path.parent, {}, cache_dir=cache_dir)
    [entry_file] = cache_dir.rglob("*.json")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    entry_file.write_bytes(pickle.dumps(Payload()))
    result = load_pipelines(path.parent, {}, cache_dir=cache_dir)
    assert (result.cache_hits, result.cache_misses, result.dag_ids) == (0, 1, ["alpha"])
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["torn", "old format", "other owner", "wrong type", "unknown step kind"])
def test_a_damaged_or_foreign_entry_is_a_miss(write_pipeline, tmp_path, damage):
    path = write_pipeline("alpha.yaml", chat_pipeline())
    cache_dir = tmp_path / "cache"
    load_pipelines(path.parent, {}, cache_dir=cache_dir)
    [entry_file] = cache_dir.rglob("*.json")
    text = entry_file.read_text()
    stored = json.loads(text)
    if damage == "torn":
        entry_file.write_text(text[: len(text) // 2])
    else:
        if damage == "old format":
            stored["format"] = 1
        elif damage == "other owner":
            stored["owner"] = str(tmp_path / "elsewhere.yaml")
        elif damage == "wrong type":
            stored["pipeline"]["steps"][0]["messages"] = "Hello"
        else:
            stored["pipeline"]["steps"][0]["kind"] = "vision"
        entry_file.write_text(json.dumps(stored))
    result = load_pipelines(path.parent, {}, cache_dir=cache_dir)
    assert (result.cache_hits, result.cache_misses, result.dag_ids) == (0, 1, ["alpha"])
    assert result.dags["alpha"].task_dict["ask"].messages == [{"role": "user", "content": "Hello"}]


def test_the_outcome_stored_is_the_outcome_of_the_bytes_hashed(write_pipeline, tmp_path):
    """A file replaced over and over (as an editor or git-sync does) while it is parsed: every entry
    holds the outcome of the bytes its digest names, never the other file's."""
    path = write_pipeline("flip.yaml", chat_pipeline())
    good, bad = path.read_bytes(), BROKEN.encode()
    outcome_of = {
        hashlib.blake2b(raw, digest_size=20).hexdigest(): kind for raw, kind in ((good, "pipeline"), (bad, "errors"))
    }
    stop = threading.Event()

    def rewrite() -> None:
        aside = path.with_suffix(".swap")
        while not stop.is_set():
            for raw in (good, bad):
                aside.write_bytes(raw)
                os.replace(aside, path)

    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    try:
        checked = 0
        for _ in range(150):
            cache = SpecCache.default(tmp_path / "cache")
            parsed = cache.parse(str(path), path.parent)
            [stored] = _entries(tmp_path / "cache").values()
            if not parsed.cached:  # this parse wrote the entry
                assert ("pipeline" if parsed.pipeline else "errors") == outcome_of[stored["digest"]]
                checked += 1
            assert outcome_of[stored["digest"]] in stored
    finally:
        stop.set()
        writer.join()
    assert checked > 1


def test_a_failed_write_leaves_no_temporary_file(write_pipeline, tmp_path):
    """A real failing write (the file-size limit makes write() fail, as a full disk does)."""
    path = write_pipeline("alpha.yaml", chat_pipeline())
    cache_dir = tmp_path / "cache"
    script = f"""
import resource, signal, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
from ovh_ai_dagfactory.factory.cache import SpecCache
cache = SpecCache.default({str(cache_dir)!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
parsed = cache.parse({str(path)!r})
print(parsed.pipeline.dag_id if parsed.pipeline else parsed.errors)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alpha"  # the parse itself is unaffected
    assert list(cache_dir.rglob("*.tmp")) == [] and list(cache_dir.rglob("*.json")) == []


def test_entries_of_deleted_files_are_pruned(write_pipeline, tmp_path):
    folder, cache_dir = tmp_path / "pipelines", tmp_path / "cache"
    for name in ("alpha", "beta", "gamma"):
        write_pipeline(f"{name}.yaml", chat_pipeline())
    load_pipelines(folder, {}, cache_dir=cache_dir)
    [entries_folder] = {entry.parent for entry in cache_dir.rglob("*.json")}
    stale_temporary, fresh_temporary = entries_folder / "tmpold.tmp", entries_folder / "tmpnew.tmp"
    stale_temporary.write_bytes(b"")
    fresh_temporary.write_bytes(b"")  # may be another process's write in progress: kept
    an_hour_ago = time.time() - 3600
    os.utime(stale_temporary, (an_hour_ago, an_hour_ago))
    (folder / "beta.yaml").unlink()
    load_pipelines(folder, {}, cache_dir=cache_dir)
    assert set(_entries(cache_dir)) == {str(folder / "alpha.yaml"), str(folder / "gamma.yaml")}
    assert not stale_temporary.exists() and fresh_temporary.exists()


def test_a_shard_prunes_only_its_own_entries(write_pipeline, tmp_path):
    folder, cache_dir = tmp_path / "pipelines", tmp_path / "cache"
    for number in range(12):
        write_pipeline(f"p{number:02}.yaml", chat_pipeline())
    shards = [load_pipelines(folder, {}, shard=shard, shards=2, cache_dir=cache_dir).loaded for shard in (0, 1)]
    assert len(_entries(cache_dir)) == 12 and all(shards)
    gone_from_0, gone_from_1 = next(iter(shards[0].values())), next(iter(shards[1].values()))
    os.unlink(gone_from_0)
    os.unlink(gone_from_1)
    load_pipelines(folder, {}, shard=1, shards=2, cache_dir=cache_dir)
    assert gone_from_0 in _entries(cache_dir) and gone_from_1 not in _entries(cache_dir)  # not shard 1's
    load_pipelines(folder, {}, shard=0, shards=2, cache_dir=cache_dir)
    assert gone_from_0 not in _entries(cache_dir) and len(_entries(cache_dir)) == 10


# The codec follows the dataclasses' own fields: a model that grows needs no codec change.
@dataclass(frozen=True)
class _Walk:
    distance: float
    kind: Literal["walk"] = "walk"


@dataclass(frozen=True)
class _Ride:
    vehicle: str | None
    kind: Literal["ride"] = "ride"


@dataclass(frozen=True)
class _Trip:
    legs: tuple[_Walk | _Ride, ...]
    starts: datetime
    lasts: timedelta
    notes: dict[str, object] = field(default_factory=dict)
    label: str | tuple[str, ...] | None = None


def test_the_codec_needs_no_edit_for_new_dataclasses():
    trip = _Trip(
        legs=(_Walk(1.5), _Ride(None), _Walk(2)),
        lasts=timedelta(days=2, microseconds=7),
        starts=datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=timezone(timedelta(hours=2))),
        notes={"a": [1, {"b": None}], "c": 1e300},
        label=("x", "y"),
    )
    back = cache_codec.decode(json.loads(json.dumps(cache_codec.encode(trip, _Trip))), _Trip)
    assert back == trip and type(back.legs[1]) is _Ride and type(back.legs[2].distance) is int
    with pytest.raises(cache_codec.Unstorable):  # YAML never gives a tuple there; JSON could not keep it
        cache_codec.encode(_Trip(legs=(), starts=trip.starts, lasts=trip.lasts, notes={"a": (1,)}), _Trip)

    @dataclass(frozen=True)
    class Ambiguous:
        either: datetime | str

    with pytest.raises(TypeError, match="cannot tell"):
        cache_codec.encode(Ambiguous("x"), Ambiguous)


def test_unreadable_files_are_errors_not_cached(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    os.mkfifo(folder / "pipe.yaml")
    cache = SpecCache.default(tmp_path / "cache")
    parsed = cache.parse(str(folder / "pipe.yaml"), folder)
    assert "not a regular file" in parsed.errors[0].message and list((tmp_path / "cache").rglob("*.json")) == []
    with pytest.raises(PipelineInvalid):
        parse_pipeline_file(folder / "pipe.yaml")


def test_an_edited_output_schema_file_is_seen_though_the_pipeline_is_unchanged(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    (folder / "schemas").mkdir(parents=True)
    schema_file = folder / "schemas" / "label.json"
    schema_file.write_text(json.dumps({"type": "object", "properties": {"label": {"type": "string"}}}))
    pipeline = folder / "classify.yaml"
    pipeline.write_text(
        "steps:\n  classify:\n    type: chat\n    model: m\n    output_schema: schemas/label.json\n"
        "    messages: [{role: user, content: x}]\n"
    )
    cache = SpecCache.default(tmp_path / "cache")
    first = cache.parse(str(pipeline), folder)
    assert first.pipeline is not None and first.pipeline.steps[0].output_schema["properties"] == {
        "label": {"type": "string"}
    }
    assert cache.parse(str(pipeline), folder).cached
    schema_file.write_text(json.dumps({"type": "object", "properties": {"topic": {"type": "string"}}}))
    edited = cache.parse(str(pipeline), folder)
    assert not edited.cached and edited.pipeline.steps[0].output_schema["properties"] == {"topic": {"type": "string"}}
    schema_file.write_text(json.dumps({"type": "object", "required": "topic"}))  # not a valid schema
    broken = cache.parse(str(pipeline), folder)
    assert broken.pipeline is None and "not a valid JSON Schema" in broken.errors[0].message


def test_a_git_sync_revision_swap_keeps_the_cache(tmp_path, monkeypatch):
    """git-sync publishes each revision behind a symlink (dags/repo -> .worktrees/<rev>): unchanged
    pipelines of a new revision are cache hits, and the entries stay those of one folder."""
    monkeypatch.delenv("OVH_AI_DAGFACTORY_PIPELINES_FOLDER", raising=False)
    cache_dir = tmp_path / "cache"
    dags = tmp_path / "dags"

    def checkout(revision: str) -> Path:
        tree = dags / ".worktrees" / revision
        (tree / "pipelines").mkdir(parents=True)
        for example in sorted(EXAMPLES.glob("*.yaml"))[:3]:
            (tree / "pipelines" / example.name).write_bytes(example.read_bytes())
        (tree / "loader.py").write_text("")
        (dags / "repo.new").symlink_to(tree)
        os.replace(dags / "repo.new", dags / "repo")  # git-sync's atomic swap
        return dags / "repo" / "loader.py"

    first = load_pipelines(namespace={"__file__": str(checkout("rev1"))}, cache_dir=cache_dir)
    second = load_pipelines(namespace={"__file__": str(checkout("rev2"))}, cache_dir=cache_dir)
    assert first.cache_misses == 3 and second.cache_hits == 3 and second.cache_misses == 0
    assert len(_entries(cache_dir)) == 3

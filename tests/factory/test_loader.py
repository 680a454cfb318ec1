"""The loader over a folder: valid pipelines become DAGs, broken files are rejected with positions
and filed as Airflow import errors, duplicates are refused, shards split the folder, and a task
run (Airflow's parsing context) builds only the DAG it needs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ovh_ai_dagfactory import load_pipelines
from ovh_ai_dagfactory.factory.loader import PipelineFolderNotFound
from tests.factory.conftest import BROKEN, chat_pipeline


def _folder(write_pipeline, tmp_path: Path) -> Path:
    write_pipeline("alpha.yaml", chat_pipeline("first"))
    write_pipeline("team/beta.yml", chat_pipeline("second", dag_id="beta_report"))
    write_pipeline("broken.yaml", BROKEN)
    return tmp_path / "pipelines"


def test_one_broken_file_never_hides_the_valid_ones(write_pipeline, tmp_path):
    folder = _folder(write_pipeline, tmp_path)
    namespace: dict = {"__file__": str(tmp_path / "loader.py")}
    result = load_pipelines(folder, namespace, cache_dir=False)
    assert sorted(result.dag_ids) == ["alpha", "beta_report"]
    assert {type(value).__name__ for key, value in namespace.items() if key.startswith("pipeline__")} == {"DAG"}
    [(path, errors)] = result.rejected.items()
    assert path.endswith("broken.yaml")
    assert (errors[0].line, errors[0].column) == (7, 18)
    assert "temperature" in errors[0].format()
    assert result.loaded["beta_report"].endswith(os.path.join("team", "beta.yml"))
    assert result.dags["alpha"].fileloc == str(tmp_path / "loader.py")


def test_namespace_defaults_to_the_callers_globals(write_pipeline, tmp_path):
    write_pipeline("alpha.yaml", chat_pipeline())
    result = load_pipelines(tmp_path / "pipelines", cache_dir=False)
    assert globals().pop("pipeline__alpha") is result.dags["alpha"]


def test_two_files_with_one_dag_id_are_both_refused(write_pipeline, tmp_path):
    write_pipeline("one.yaml", chat_pipeline(dag_id="same"))
    write_pipeline("two.yaml", chat_pipeline(dag_id="same"))
    write_pipeline("ok.yaml", chat_pipeline())
    result = load_pipelines(tmp_path / "pipelines", {}, cache_dir=False)
    assert result.dag_ids == ["ok"]
    assert sorted(os.path.basename(path) for path in result.rejected) == ["one.yaml", "two.yaml"]
    error = result.rejected[str(tmp_path / "pipelines" / "one.yaml")][0]
    assert (error.line, error.column) == (1, 1) and "also used by two.yaml" in error.message


def test_missing_folder_is_an_error_of_the_loader_file(tmp_path):
    with pytest.raises(PipelineFolderNotFound, match="pipelines folder not found"):
        load_pipelines(tmp_path / "nope", {})


def test_default_folder_is_pipelines_next_to_the_loader_file(write_pipeline, tmp_path, monkeypatch):
    monkeypatch.delenv("OVH_AI_DAGFACTORY_PIPELINES_FOLDER", raising=False)
    write_pipeline("alpha.yaml", chat_pipeline())
    result = load_pipelines(None, {"__file__": str(tmp_path / "loader.py")}, cache_dir=False)
    assert result.dag_ids == ["alpha"]
    assert "Pipeline file: `pipelines/alpha.yaml`" in result.dags["alpha"].doc_md


def test_shards_split_the_folder_without_overlap(write_pipeline, tmp_path):
    for number in range(20):
        write_pipeline(f"p{number:02}.yaml", chat_pipeline())
    shards = [load_pipelines(tmp_path / "pipelines", {}, shard=i, shards=3, cache_dir=False).dag_ids for i in range(3)]
    every = [dag_id for shard in shards for dag_id in shard]
    assert sorted(every) == [f"p{number:02}" for number in range(20)]
    assert all(shard for shard in shards)
    with pytest.raises(ValueError, match="shard"):
        load_pipelines(tmp_path / "pipelines", {}, shard=3, shards=3)


@pytest.fixture
def parsing_context(monkeypatch):
    def set_dag_id(dag_id: str) -> None:
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "ask")

    return set_dag_id


def test_task_run_builds_only_its_dag_by_file_name(write_pipeline, tmp_path, parsing_context):
    folder = _folder(write_pipeline, tmp_path)
    parsing_context("alpha")
    result = load_pipelines(folder, {}, cache_dir=False)
    assert result.only_dag_id == "alpha" and result.dag_ids == ["alpha"]
    assert result.cache_misses == 0 and not result.rejected  # the broken file was not even read


@pytest.mark.parametrize("use_cache", [True, False], ids=["index", "scan"])
def test_task_run_finds_an_explicit_dag_id(write_pipeline, tmp_path, parsing_context, use_cache):
    folder = _folder(write_pipeline, tmp_path)
    cache_dir = tmp_path / "cache" if use_cache else False
    if use_cache:
        load_pipelines(folder, {}, cache_dir=cache_dir)  # the DAG processor's full parse writes the index
    parsing_context("beta_report")
    result = load_pipelines(folder, {}, cache_dir=cache_dir)
    assert result.dag_ids == ["beta_report"]


def test_task_run_for_an_unknown_dag_builds_nothing(write_pipeline, tmp_path, parsing_context):
    folder = _folder(write_pipeline, tmp_path)
    parsing_context("not_there")
    assert load_pipelines(folder, {}, cache_dir=False).dag_ids == []


def test_cache_reuses_validated_results_and_sees_every_change(write_pipeline, tmp_path):
    folder = _folder(write_pipeline, tmp_path)
    cache_dir = tmp_path / "cache"
    first = load_pipelines(folder, {}, cache_dir=cache_dir)
    assert (first.cache_hits, first.cache_misses) == (0, 3)
    second = load_pipelines(folder, {}, cache_dir=cache_dir)
    assert (second.cache_hits, second.cache_misses) == (3, 0)
    assert second.rejected.keys() == first.rejected.keys()  # errors are cached too, same positions
    assert second.errors() == first.errors()
    # Same size, same mtime, other bytes: still a miss (the key is the content, not the stat).
    broken = folder / "broken.yaml"
    stat = broken.stat()
    broken.write_text(BROKEN.replace("temperature: 7", "temperature: 1"), encoding="utf-8")
    os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = load_pipelines(folder, {}, cache_dir=cache_dir)
    assert (third.cache_hits, third.cache_misses) == (2, 1)
    assert sorted(third.dag_ids) == ["alpha", "beta_report", "broken"] and not third.rejected


def test_every_cache_entry_is_on_disk_when_the_load_returns(write_pipeline, tmp_path):
    # A process that exits right after the load (Airflow's parsing child) loses none.
    folder = _folder(write_pipeline, tmp_path)
    cache_dir = tmp_path / "cache"
    first = load_pipelines(folder, {}, cache_dir=cache_dir)
    entries = [path for path in cache_dir.rglob("*.json") if "specs" in path.parts]
    assert first.cache_misses == 3 and len(entries) == 3
    assert not [path for path in cache_dir.rglob("*.tmp")]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_the_load_found_it(write_pipeline, tmp_path, enabled):
    import gc

    folder = _folder(write_pipeline, tmp_path)
    (gc.enable if enabled else gc.disable)()
    try:
        assert load_pipelines(folder, {}, cache_dir=False).dag_ids
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_cache_directory_of_another_user_is_refused(tmp_path):
    from ovh_ai_dagfactory.factory.cache import SpecCache

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert SpecCache.default(shared).directory is None
    assert SpecCache.default(tmp_path / "private").directory is not None
    assert SpecCache.default(False).directory is None


def _promptly(call, seconds: float = 30):
    """`call()`'s result, failing the test instead of hanging when it does not return in time."""
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return outcome["result"]


@pytest.fixture
def special_files(write_pipeline, tmp_path) -> Path:
    """A pipelines folder with a FIFO, a symlink to /dev/zero, a folder named *.yaml, a file name that
    is not UTF-8 — and valid pipelines, one in a sub-folder with an explicit dag_id."""
    write_pipeline("valid.yaml", chat_pipeline())
    write_pipeline("zteam/other.yaml", chat_pipeline(dag_id="elsewhere"))  # scanned after x, z
    folder = tmp_path / "pipelines"
    os.mkfifo(folder / "x.yaml")
    (folder / "z.yaml").symlink_to("/dev/zero")
    (folder / "folder.yaml").mkdir()
    os.close(os.open(os.fsencode(folder) + b"/caf\xe9.yaml", os.O_CREAT | os.O_WRONLY, 0o644))
    return folder


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_special_files_are_rejected_at_once_and_never_hide_the_valid_ones(special_files, tmp_path, use_cache):
    cache_dir = tmp_path / "cache" if use_cache else False
    result = _promptly(lambda: load_pipelines(special_files, {}, cache_dir=cache_dir))
    assert sorted(result.dag_ids) == ["elsewhere", "valid"]
    for name in ("x.yaml", "z.yaml"):
        [error] = result.rejected[str(special_files / name)]
        assert (error.line, error.column) == (1, 1) and "not a regular file" in error.message
    assert str(special_files / "folder.yaml") not in result.loaded.values()  # os.walk lists it as a folder
    assert os.fsdecode(os.fsencode(special_files) + b"/caf\xe9.yaml") in result.rejected  # empty file


@pytest.mark.parametrize("dag_id", ["elsewhere", "x", "z"])
def test_a_task_run_never_waits_on_a_special_file(special_files, parsing_context, dag_id):
    """The worker fast path scans the folder for `dag_id:` lines when the name does not tell."""
    parsing_context(dag_id)
    result = _promptly(lambda: load_pipelines(special_files, {}, cache_dir=False))
    assert result.dag_ids == (["elsewhere"] if dag_id == "elsewhere" else [])


def test_files_appearing_and_vanishing_during_a_load_never_raise(write_pipeline, tmp_path):
    write_pipeline("steady.yaml", chat_pipeline())
    folder = tmp_path / "pipelines"
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for number in range(20):
                (folder / f"churn{number}.yaml").write_text(chat_pipeline())
            for number in range(20):
                (folder / f"churn{number}.yaml").unlink()

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    try:
        for _ in range(15):
            result = load_pipelines(folder, {}, cache_dir=tmp_path / "cache")
            assert "steady" in result.dag_ids
            assert all("internal error" not in error.message for error in result.errors())
    finally:
        stop.set()
        churner.join()

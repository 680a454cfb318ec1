"""What Airflow itself refuses is refused by the loader, per pipeline file, at the key it comes from:
the checks Airflow's DagBag runs on every DAG (constructor, `dag.validate()`, cycles, cluster
policies, duplicate dag_ids) run while the pipeline is built, so the loader file stays clean. An
exception that is not Airflow's refusal is a bug of ours: logged with its traceback, and the file
rejected as an internal error, never raised out of `load_pipelines`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import textwrap
from pathlib import Path

import pytest

from ovh_ai_dagfactory import load_pipelines
from ovh_ai_dagfactory.factory.builder import build_checked_dag
from ovh_ai_dagfactory.spec.errors import PipelineInvalid
from ovh_ai_dagfactory.spec.parse import parse_pipeline_text
from tests.factory.conftest import chat_pipeline

#: Refused by Airflow's DAG constructor (and, since it learnt Airflow's rule, by validation too).
CATCHUP_WITHOUT_START = """\
description: catch up on what?
schedule: "@daily"
catchup: true
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: Hello}]
"""
FORBIDDEN_TAG = chat_pipeline("tagged").replace("schedule: null", "schedule: null\ntags: [forbidden]")
LOADER_FILE = """\
# airflow DAG loader (ovh-ai-dagfactory)
from ovh_ai_dagfactory import load_pipelines
from ovh_ai_dagfactory.factory.builder import build_checked_dag
from ovh_ai_dagfactory.spec.errors import PipelineInvalid
from ovh_ai_dagfactory.spec.parse import parse_pipeline_text

load_pipelines(None, globals(), cache_dir=False)
"""


@pytest.fixture
def cluster_policy(airflow_major):
    """Install real cluster policies in Airflow's policy plugin manager (what an `airflow.policy`
    entry point or airflow_local_settings.py does), removed again after the test."""
    from airflow import settings
    from airflow.exceptions import AirflowClusterPolicySkipDag, AirflowClusterPolicyViolation
    from airflow.policies import hookimpl

    manager = settings.get_policy_plugin_manager() if airflow_major >= 3 else settings.POLICY_PLUGIN_MANAGER

    class Policies:
        @hookimpl
        def dag_policy(self, dag):
            if "forbidden" in dag.tags:
                raise AirflowClusterPolicyViolation("DAGs may not be tagged 'forbidden' here")
            if "skip-me" in dag.tags:
                raise AirflowClusterPolicySkipDag("not on this cluster")

        @hookimpl
        def task_policy(self, task):
            if task.task_id == "no_such_task_allowed":
                raise AirflowClusterPolicyViolation(f"task id {task.task_id} is reserved")

    plugin = Policies()
    manager.register(plugin)
    yield
    manager.unregister(plugin)


def test_a_dag_argument_airflow_refuses_is_reported_at_its_key(airflow_major):
    """Built from a spec object directly: whether validation catches this too is the spec's business;
    here Airflow's own DAG constructor refuses it and the builder says where."""
    valid = parse_pipeline_text(CATCHUP_WITHOUT_START + "start_date: 2024-01-01\n", "catchup.yaml")
    with pytest.raises(PipelineInvalid) as refused:
        build_checked_dag(dataclasses.replace(valid, catchup=True, start_date=None))
    [error] = refused.value.errors
    # 3.x refuses catchup without start_date; 2.11 refuses any schedule without start_date.
    key = "catchup" if airflow_major >= 3 else "schedule"
    assert (error.line, error.column) == (valid.position_of(key).line, 1) != (1, 1)
    assert error.file == "catchup.yaml" and not error.internal
    assert error.message.startswith(f"Airflow refuses `{key}`: ") and "start_date" in error.message


def test_the_loader_rejects_what_airflow_refuses_and_builds_the_rest(write_pipeline, tmp_path):
    write_pipeline("catchup.yaml", CATCHUP_WITHOUT_START)
    write_pipeline("fine.yaml", chat_pipeline())
    result = load_pipelines(tmp_path / "pipelines", {}, cache_dir=False)
    assert result.dag_ids == ["fine"]
    [error] = result.rejected[str(tmp_path / "pipelines" / "catchup.yaml")]
    assert error.line in (2, 3) and not error.internal and "start_date" in error.message


def test_cluster_policies_are_applied_per_pipeline(write_pipeline, tmp_path, cluster_policy):
    write_pipeline("tagged.yaml", FORBIDDEN_TAG)
    write_pipeline("skipped.yaml", chat_pipeline().replace("schedule: null", "schedule: null\ntags: [skip-me]"))
    write_pipeline(
        "reserved.yaml",
        chat_pipeline().replace(
            "  ask:",
            "  first:\n    type: chat\n    model: m\n"
            "    messages: [{role: user, content: Hi}]\n"
            "  no_such_task_allowed:",
        ),
    )
    write_pipeline("fine.yaml", chat_pipeline())
    folder = tmp_path / "pipelines"
    result = load_pipelines(folder, {}, cache_dir=False)
    assert result.dag_ids == ["fine"]
    assert set(result.rejected) == {str(folder / "tagged.yaml"), str(folder / "reserved.yaml")}  # skip: silent
    [tag_error] = result.rejected[str(folder / "tagged.yaml")]
    assert "may not be tagged 'forbidden'" in tag_error.message and "cluster policy" in tag_error.hint
    [task_error] = result.rejected[str(folder / "reserved.yaml")]
    assert (task_error.line, task_error.column) == (9, 3)  # the step's id key
    assert "step 'no_such_task_allowed'" in task_error.message and "reserved" in task_error.message


def test_a_dag_id_another_dag_file_holds_is_rejected_under_the_yaml_file(tmp_path, airflow_major):
    dags = tmp_path / "dags"
    (dags / "pipelines").mkdir(parents=True)
    weekly = chat_pipeline() + "dag_id: report\n"  # on its own line, not at the 1:1 every fallback uses
    (dags / "pipelines" / "weekly.yaml").write_text(weekly, encoding="utf-8")
    (dags / "pipelines" / "fine.yaml").write_text(chat_pipeline(), encoding="utf-8")
    (dags / "ovh_pipelines.py").write_text(LOADER_FILE, encoding="utf-8")
    (dags / "handwritten.py").write_text(
        "from ovh_ai_dagfactory.compat import DAG\n\ndag = DAG(dag_id='report', schedule=None)  # airflow\n"
    )
    bag = _dagbag(dags, airflow_major, collect=False)
    bag.process_file(str(dags / "handwritten.py"))
    bag.process_file(str(dags / "ovh_pipelines.py"))
    assert set(bag.dag_ids) == {"report", "fine"}
    assert bag.dags["report"].fileloc == str(dags / "handwritten.py")
    errors = {Path(name).name: text for name, text in bag.import_errors.items()}
    assert set(errors) == {"weekly.yaml"}
    line = weekly.count("\n")
    assert f"weekly.yaml:{line}:1: error: dag_id 'report' is already used by" in errors["weekly.yaml"]


def test_dagbag_files_airflows_refusals_under_each_yaml_file_never_the_loader(tmp_path, airflow_major, cluster_policy):
    dags = tmp_path / "dags"
    (dags / "pipelines").mkdir(parents=True)
    for name, text in {
        "bad_cron.yaml": chat_pipeline().replace("schedule: null", 'schedule: "61 * * * *"'),
        "catchup.yaml": CATCHUP_WITHOUT_START,
        "tagged.yaml": FORBIDDEN_TAG,
        "valid.yaml": chat_pipeline(),
    }.items():
        (dags / "pipelines" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (dags / "ovh_pipelines.py").write_text(LOADER_FILE, encoding="utf-8")
    bag = _dagbag(dags, airflow_major)
    assert bag.dag_ids == ["valid"]
    errors = {Path(name).name: text for name, text in bag.import_errors.items()}
    assert "ovh_pipelines.py" not in errors
    assert set(errors) == {"bad_cron.yaml", "catchup.yaml", "tagged.yaml"}
    assert re.search(r"bad_cron\.yaml:2:11: error: .*61 \* \* \* \*", errors["bad_cron.yaml"])
    assert re.search(r"catchup\.yaml:[23]:\d+: error: .*start_date", errors["catchup.yaml"])
    assert re.search(r"tagged\.yaml:1:1: error: Airflow refuses this pipeline: .*forbidden", errors["tagged.yaml"])


def test_an_error_of_ours_is_an_internal_error_of_that_file_only(write_pipeline, tmp_path, caplog):
    """A cache entry a buggy version could have written: right digest, a step depending on a step
    that does not exist (validation never lets that through). Building it fails in our code."""
    path = write_pipeline("odd.yaml", chat_pipeline())
    write_pipeline("fine.yaml", chat_pipeline())
    folder, cache_dir = tmp_path / "pipelines", tmp_path / "cache"
    load_pipelines(folder, {}, cache_dir=cache_dir)
    [entry] = [
        candidate for candidate in cache_dir.rglob("*.json") if json.loads(candidate.read_text())["owner"] == str(path)
    ]
    stored = json.loads(entry.read_text())
    assert stored["digest"] == hashlib.blake2b(path.read_bytes(), digest_size=20).hexdigest()
    stored["pipeline"]["steps"][0]["depends_on"] = ["ghost"]
    entry.write_text(json.dumps(stored))
    with caplog.at_level(logging.ERROR):
        result = load_pipelines(folder, {}, cache_dir=cache_dir)
    assert result.dag_ids == ["fine"]
    [error] = result.rejected[str(path)]
    assert error.internal and (error.line, error.column) == (1, 1)
    assert "internal error of ovh-ai-dagfactory (KeyError" in error.message and "report" in error.hint
    logged = [record for record in caplog.records if record.exc_info and "odd.yaml" in record.getMessage()]
    assert logged and logged[0].exc_info[0] is KeyError


def _dagbag(folder: Path, airflow_major: int, collect: bool = True):
    if airflow_major >= 3:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(folder), safe_mode=True, collect_dags=collect)
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(folder), include_examples=False, safe_mode=True, collect_dags=collect)

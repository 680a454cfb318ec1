"""`.pre-commit-hooks.yaml`: the hook runs our console script, on pipeline files only by default."""

from __future__ import annotations

import re
from importlib.metadata import entry_points

import yaml
from conftest import REPO_ROOT


def _hook() -> dict:
    (hook,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    return hook


def test_the_hook_runs_the_validate_console_script() -> None:
    hook = _hook()
    command, subcommand = hook["entry"].split()
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == command]
    assert script.value == "ovh_ai_dagfactory.cli.main:main" and subcommand == "validate"
    assert hook["language"] == "python" and hook["require_serial"] is True


def test_the_hook_selects_pipeline_files_and_leaves_other_yaml_alone() -> None:
    files = re.compile(_hook()["files"])
    for path in ("pipelines/daily.yaml", "dags/pipelines/team/report.yml"):
        assert files.search(path), path
    for path in (".github/workflows/ci.yaml", "charts/values.yaml", "mypipelines/x.yaml", "pipelines/readme.md"):
        assert not files.search(path), path

"""The layers stay apart: the provider (hook, operators) never loads the spec or the builder, and the
spec layer — parsing a pipeline file, the `validate` and `render` commands — never loads Airflow or
openai. Each check runs in a fresh interpreter, so nothing imported by other tests can hide a leak."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "pipelines" / "summarize_then_embed.yaml"

# Prints the top-level package of every module loaded, plus every module of ours.
PROBE = """
import json, sys
{code}
print(json.dumps(sorted(name for name in sys.modules if "." not in name or name.startswith("ovh_ai_dagfactory."))))
"""


def modules_loaded_by(code: str) -> set[str]:
    # The test session's environment: Airflow (when a check may import it) reads the tests' home.
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _ours(modules: set[str], layer: str) -> list[str]:
    return sorted(name for name in modules if name.startswith(f"ovh_ai_dagfactory.{layer}"))


@pytest.mark.parametrize("module", ["ovh_ai_dagfactory.operators.ai_endpoints", "ovh_ai_dagfactory.hooks.ai_endpoints"])
def test_the_provider_loads_neither_the_spec_nor_the_builder(module):
    modules = modules_loaded_by(f"import {module}")
    assert module in modules and "airflow" in modules  # the probe ran and saw the import
    assert _ours(modules, "spec") == [] and _ours(modules, "factory") == []


@pytest.mark.parametrize(
    "code",
    [
        "import ovh_ai_dagfactory.spec",
        f"from ovh_ai_dagfactory.spec.parse import parse_pipeline_file\nparse_pipeline_file({str(EXAMPLE)!r})",
        f"from ovh_ai_dagfactory.cli.main import main\nassert main(['validate', {str(EXAMPLE)!r}]) == 0",
        f"from ovh_ai_dagfactory.cli.main import main\nassert main(['render', {str(EXAMPLE)!r}]) == 0",
    ],
    ids=["import", "parse", "validate", "render"],
)
def test_the_spec_layer_loads_neither_airflow_nor_openai(code):
    modules = modules_loaded_by(code)
    assert "ovh_ai_dagfactory.spec.model" in modules  # the probe ran and saw the spec
    assert "airflow" not in modules and "openai" not in modules

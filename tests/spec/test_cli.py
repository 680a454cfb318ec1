"""`ovh-ai-dagfactory validate` and `schema`, run as users run them: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "pipelines"
INVALID = Path(__file__).parent / "invalid"
VALID = """\
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: Hello}]
"""


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovh_ai_dagfactory.cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_valid_folder_exits_0_with_a_summary() -> None:
    result = cli("validate", "pipelines")
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(list((REPO / "pipelines").glob("*.yaml")))
    assert count >= 9 and result.stdout == f"{count} files valid\n"


def test_one_line_per_problem_then_hint_then_summary(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / "bad.yaml").write_text(VALID.replace("type: chat", "type: chat\n    temprature: 1\n    top_p: 7"))
    result = cli("validate", str(tmp_path))
    assert result.returncode == 1
    bad = tmp_path / "bad.yaml"
    assert result.stdout.splitlines() == [
        f"{bad}:4:5: error: unknown key 'temprature' in step 'ask'",
        "  hint: did you mean 'temperature'?",
        f"{bad}:5:12: error: 'top_p' of step 'ask' must be at most 1, got 7",
        "2 errors in 1 of 2 files",
    ]
    assert result.stderr == ""


def test_json_format(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("steps: {}\n")
    (tmp_path / "good.yml").write_text(VALID)
    result = cli("validate", "--format", "json", str(tmp_path))
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["summary"] == {
        "files": 2,
        "invalid_files": 1,
        "errors": 1,
        "valid": False,
        "text": "1 error in 1 of 2 files",
    }
    assert document["files"] == [
        {"path": str(tmp_path / "bad.yaml"), "valid": False, "dag_id": None},
        {"path": str(tmp_path / "good.yml"), "valid": True, "dag_id": "good"},
    ]
    (error,) = document["errors"]
    assert (error["line"], error["column"]) == (1, 8) and "at least one step" in error["message"]


def test_whole_invalid_corpus_without_a_traceback() -> None:
    result = cli("validate", str(INVALID))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(f"of {len(list(INVALID.glob('*.yaml')))} files")


@pytest.mark.parametrize(
    "args, message",
    [
        (["validate", "does/not/exist.yaml"], "no such file or folder: does/not/exist.yaml"),
        (["validate", "docs"], "no *.yaml or *.yml files found"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    if args[1] == "docs":
        args = ["validate", str(tmp_path)]
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_no_arguments_is_a_usage_error() -> None:
    assert cli("validate").returncode == 2


def test_schema_prints_the_schema_file() -> None:
    result = cli("schema")
    assert result.returncode == 0
    assert result.stdout == (REPO / "schemas" / "pipeline.schema.json").read_text(encoding="utf-8")
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_validate_imports_neither_airflow_nor_openai() -> None:
    code = (
        "import sys\n"
        "from ovh_ai_dagfactory.cli.main import main\n"
        "code = main(['validate', 'pipelines', 'tests/spec/invalid'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'openai'))\n"
        "print('HEAVY', heavy, code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.splitlines()[-1] == "HEAVY [] 1", result.stdout[-500:] + result.stderr[-2000:]


def test_python_dash_m_package_is_the_command_line_and_version_says_what_is_installed() -> None:
    from importlib.metadata import version

    import ovh_ai_dagfactory

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ovh_ai_dagfactory", "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"ovh-ai-dagfactory {ovh_ai_dagfactory.__version__} (apache-airflow {version('apache-airflow')}, "
        f"openai {version('openai')}, Python {sys.version.split()[0]})\n"
    )
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert not [name for name in imported if name.split(".")[0] in ("airflow", "openai")]
    # The installed distribution's version is the package's own (declared once, read by hatch).
    assert version("ovh-ai-dagfactory") == ovh_ai_dagfactory.__version__
    validate = subprocess.run(
        [sys.executable, "-m", "ovh_ai_dagfactory", "validate", "pipelines"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert validate.returncode == 0 and validate.stdout.endswith(" files valid\n"), validate.stderr

"""`render` and `run` as a user types them (run: a subprocess, its own Airflow home, llmock as the endpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import REPO_ROOT, TEST_TOKEN

from ovh_ai_dagfactory.cli.main import main
from tests.factory.conftest import BROKEN

SUMMARIZE = str(REPO_ROOT / "pipelines" / "summarize_then_embed.yaml")


def test_render_text_lists_tasks_operators_parameters_edges(capsys):
    assert main(["render", SUMMARIZE]) == 0
    out = capsys.readouterr().out
    assert "DAG summarize_then_embed" in out
    assert "summarize: OVHCloudAIEndpointsChatCompletionsOperator" in out
    assert "embed_summary: OVHCloudAIEndpointsEmbeddingOperator  (after summarize)" in out
    assert "temperature: 0.3" in out and "max_tokens: 100" in out and "retry_delay=30s" in out
    assert "input: {{ steps.summarize.content }}" in out
    assert "summarize >> embed_summary" in out


def test_render_mermaid(capsys):
    assert main(["render", SUMMARIZE, "--format", "mermaid"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "flowchart LR"
    assert '  step_summarize["summarize<br/>chat · Meta-Llama-3_3-70B-Instruct"]' in out
    assert "  step_summarize --> step_embed_summary" in out


def test_render_bad_pipeline_prints_positions(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    assert main(["render", str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:7:18: error:" in captured.err and "Traceback" not in captured.err


def _run_cli(args, cwd: Path, env_extra: dict[str, str]):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "_AIRFLOW", "OPENAI", "OVH_AI_DAGFACTORY"))
    }
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "ovh_ai_dagfactory.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_run_prints_each_steps_result(tmp_path, llmock):
    llmock.reply("Airflow runs workflows.")
    connection = {"conn_type": "ovhcloud_ai_endpoints", "host": llmock.base_url("openai"), "password": TEST_TOKEN}
    done = _run_cli(
        ["run", SUMMARIZE, "--logical-date", "2024-02-03"],
        tmp_path,
        {"AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(connection)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summarize (chat): success\n  content: Airflow runs workflows." in done.stdout
    assert "embed_summary (embedding): success\n  vectors: 1 × " in done.stdout
    assert "tokens: prompt_tokens=" in done.stdout and "2 of 2 steps succeeded" in done.stdout
    assert list(tmp_path.iterdir()) == []  # the throw-away Airflow home lived elsewhere and is gone
    assert not list(Path(tempfile.gettempdir()).glob("ovh-ai-dagfactory-run-*"))
    [embedding] = [r.body for r in llmock.requests if r.path.endswith("/embeddings")]
    assert embedding["input"] == "Airflow runs workflows."
    assert TEST_TOKEN not in done.stdout + done.stderr


def test_run_without_connection_says_how_to_set_it(tmp_path):
    done = _run_cli(["run", SUMMARIZE], tmp_path, {})
    assert done.returncode == 1
    assert "Airflow connection 'ovh_ai_endpoints_default' not found" in done.stderr
    assert "export AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT=" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_bad_pipeline_exits_1_with_positions_and_no_airflow(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    done = _run_cli(["run", str(bad)], tmp_path, {})
    assert done.returncode == 1 and f"{bad}:7:18: error:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".ovh-ai-dagfactory").exists()  # Airflow was never set up


def test_run_several_files_in_one_airflow_start_up(tmp_path, llmock):
    connection = {"conn_type": "ovhcloud_ai_endpoints", "host": llmock.base_url("openai"), "password": TEST_TOKEN}
    basic = str(REPO_ROOT / "pipelines" / "basic_chat.yaml")
    batch = str(REPO_ROOT / "pipelines" / "batch_embeddings.yaml")
    done = _run_cli(["run", basic, batch], tmp_path, {"AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(connection)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.index("Running chat_completion_example") < done.stdout.index("Running batch_embeddings")
    assert "generate_response (chat): success" in done.stdout
    assert "batch_embeddings (embedding): success\n  vectors: 3 × " in done.stdout
    assert [r.path.rsplit("/", 1)[-1] for r in llmock.requests] == ["completions", "embeddings"]


def test_run_checks_every_file_before_starting_airflow(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    done = _run_cli(["run", SUMMARIZE, str(bad)], tmp_path, {})
    assert done.returncode == 1 and f"{bad}:7:18: error:" in done.stderr
    assert "Running" not in done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / ".ovh-ai-dagfactory").exists()


def test_run_prints_each_item_of_a_fan_out(tmp_path, llmock):
    connection = {"conn_type": "ovhcloud_ai_endpoints", "host": llmock.base_url("openai"), "password": TEST_TOKEN}
    done = _run_cli(
        ["run", str(REPO_ROOT / "pipelines" / "explain_topics.yaml")],
        tmp_path,
        {"AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(connection)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "explain (chat, 3 items): success\n  [0] content: " in done.stdout
    assert "\n  [2] content: " in done.stdout and "embed (embedding): success\n  vectors: 3 × " in done.stdout
    assert "3 of 3 steps succeeded" in done.stdout


def test_render_shows_a_fan_out(capsys):
    assert main(["render", str(REPO_ROOT / "pipelines" / "explain_topics.yaml")]) == 0
    out = capsys.readouterr().out
    assert (
        "  explain: OVHCloudAIEndpointsChatCompletionsOperator  (after extract)\n"
        "    for_each: {{ steps.extract.json.topics }}  (mapped task, one per item; the list comes from task "
        "explain__for_each)\n"
    ) in out
    assert "    max_active_tis_per_dagrun: 4\n" in out


def _airflow(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_run_uses_the_connections_and_variables_of_airflow_home(tmp_path, llmock):
    """With AIRFLOW_HOME set, `run` works in that home like `airflow dags test`: its DB's connection
    and variable are used (none is in the environment)."""
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "OPENAI"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    _airflow(["db", "migrate"], env)
    _airflow(["variables", "set", "llm_model", "Mistral-Nemo-Instruct-2407"], env)
    _airflow(
        ["connections", "add", "ovh_ai_endpoints_default", "--conn-type", "ovhcloud_ai_endpoints"]
        + ["--conn-host", llmock.base_url("openai"), "--conn-password", TEST_TOKEN],
        env,
    )
    work = tmp_path / "work"
    work.mkdir()
    daily = str(REPO_ROOT / "pipelines" / "templated_daily_report.yaml")
    done = _run_cli(["run", daily, "--logical-date", "2024-03-04"], work, {"AIRFLOW_HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Using the Airflow home in AIRFLOW_HOME ({home})" in done.stdout
    [body] = [r.body for r in llmock.requests if r.path.endswith("/chat/completions")]
    assert body["model"] == "Mistral-Nemo-Instruct-2407"
    assert body["messages"][1]["content"] == "Generate a report summary for 2024-03-04"
    assert list(work.iterdir()) == []


def test_run_conf_sets_params_and_a_failed_step_is_summarised_without_a_traceback(tmp_path, llmock):
    llmock_url = llmock.base_url("openai")
    connection = {"conn_type": "ovhcloud_ai_endpoints", "host": llmock_url, "password": TEST_TOKEN}
    pipeline = tmp_path / "conf.yaml"
    pipeline.write_text(
        "params:\n  topic: {type: string, default: nothing}\n  n: 1\nsteps:\n"
        "  ask: {type: chat, model: m, messages: [{role: user, content: 'About {{ params.topic }} x{{ params.n }}'}]}\n"
        "  broken: {type: chat, model: m, connection: unreachable, messages: [{role: user, content: hi}]}\n"
    )
    (tmp_path / "more.json").write_text('{"n": 3}')
    unreachable = {"conn_type": "ovhcloud_ai_endpoints", "host": "http://127.0.0.1:9/v1", "password": "x" * 8}
    unreachable["extra"] = {"max_retries": 0, "timeout": 2}
    done = _run_cli(
        ["run", str(pipeline), "--conf", "topic=queues", "--conf", "@more.json"],
        tmp_path,
        {
            "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(connection),
            "AIRFLOW_CONN_UNREACHABLE": json.dumps(unreachable),
        },
    )
    assert done.returncode == 1, done.stdout + done.stderr
    [body] = [r.body for r in llmock.requests if r.path.endswith("/chat/completions")]
    assert body["messages"][0]["content"] == "About queues x3"
    assert "ask (chat): success" in done.stdout
    assert "broken (chat): failed\n  error: EndpointConnectionError: Connection error: could not reach" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    bad = _run_cli(["run", str(pipeline), "--conf", "not-a-pair"], tmp_path, {})
    assert bad.returncode == 1 and "error: --conf: 'not-a-pair' is not key=value" in bad.stderr


def test_the_docs_home_shows_the_graph_render_draws(capsys):
    """docs/index.md shows a pipeline's graph as `render --format mermaid` prints it (the docs site
    draws it): the copy there must be what the command prints today."""
    assert main(["render", "--format", "mermaid", str(REPO_ROOT / "pipelines" / "explain_topics.yaml")]) == 0
    drawn = capsys.readouterr().out
    page = (REPO_ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{drawn}```" in page

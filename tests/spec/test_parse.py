"""What the parser makes of valid pipelines, and the behaviours around it (paths, fast path)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ovh_ai_dagfactory.spec import PathNotFound, PipelineInvalid, parse_pipeline_text, validate_paths
from ovh_ai_dagfactory.spec.durations import parse_duration

MINIMAL = """\
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: Hello}]
"""


def test_dag_id_defaults_to_the_file_name() -> None:
    assert parse_pipeline_text(MINIMAL, "dags/daily_report.yml").dag_id == "daily_report"


def test_step_values_win_over_defaults() -> None:
    text = """\
defaults:
  chat: {model: default-model, temperature: 0.3, retries: 2, retry_delay: 1m}
steps:
  ask:
    type: chat
    temperature: 0.9
    messages: [{role: user, content: Hello}]
"""
    (step,) = parse_pipeline_text(text, "p.yaml").steps
    assert (step.model, step.temperature) == ("default-model", 0.9)
    assert (step.options.retries, step.options.retry_delay) == (2, timedelta(minutes=1))


def test_the_issue_example_parses() -> None:
    text = """\
dag_id: daily_report
description: Daily summary of the data team's report
schedule: "@daily"
start_date: 2024-01-01
catchup: false
tags: [reports, llm]
default_args: {owner: data, retries: 3, retry_delay: 30s}
connection: ovh_ai_endpoints_default
defaults:
  chat: {model: Meta-Llama-3_3-70B-Instruct, temperature: 0.3}
  embedding: {model: BGE-M3}
steps:
  summarize:
    type: chat
    model: "{{ var.value.llm_model }}"
    messages:
      - {role: system, content: You are a data analyst.}
      - {role: user, content: "Generate a report summary for {{ ds }}"}
    max_tokens: 500
  embed_summary:
    type: embedding
    input: "{{ steps.summarize.content }}"
    depends_on: [summarize]
"""
    pipeline = parse_pipeline_text(text, "daily_report.yaml")
    assert pipeline.connection == "ovh_ai_endpoints_default"
    assert pipeline.tags == ("reports", "llm")
    assert [step.position.line for step in pipeline.steps] == [13, 20]
    assert pipeline.steps[0].model == "{{ var.value.llm_model }}"  # the step's own model wins


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=timezone.utc)),
        ("2024-01-01T06:30:00", datetime(2024, 1, 1, 6, 30, tzinfo=timezone.utc)),
        ("2024-01-01 06:30:00+02:00", datetime(2024, 1, 1, 4, 30, tzinfo=timezone.utc)),
        ('"2024-01-01"', datetime(2024, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_start_date_becomes_aware_utc(text: str, expected: datetime) -> None:
    pipeline = parse_pipeline_text(f"start_date: {text}\n" + MINIMAL, "p.yaml")
    assert pipeline.start_date == expected
    assert pipeline.start_date.tzinfo is not None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        (90, timedelta(seconds=90)),
    ],
)
def test_durations(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "5 minutes", "1.5h", -1, True, None, "m5"])
def test_not_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_every_error_of_a_file_is_reported_in_order() -> None:
    text = MINIMAL.replace("type: chat", "type: chat\n    temprature: 1\n    top_p: 7")
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    assert [(e.line, e.column) for e in caught.value.errors] == [(4, 5), (5, 12)]


def test_validate_paths_refuses_every_file_of_a_duplicate_dag_id(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("dag_id: same\n" + MINIMAL)
    nested = tmp_path / "team"
    nested.mkdir()
    (nested / "b.yml").write_text("# second\ndag_id: same\n" + MINIMAL)
    (nested / "notes.txt").write_text("not a pipeline")
    report = validate_paths([str(tmp_path)])
    assert report.files == [str(tmp_path / "a.yaml"), str(nested / "b.yml")]
    # The loader refuses both files (a worker could not tell which one the scheduler used): so does validate.
    first, second = sorted(report.errors, key=lambda error: error.file)
    assert (first.file, first.line, first.column) == (str(tmp_path / "a.yaml"), 1, 1)
    assert (second.file, second.line, second.column) == (str(nested / "b.yml"), 2, 1)
    assert "also used by b.yml" in first.message and "also used by a.yaml" in second.message
    assert list(report.pipelines) == report.files


def test_validate_paths_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(PathNotFound):
        validate_paths([str(tmp_path / "missing")])


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"description: caf\xe9\n")
    report = validate_paths([str(bad)])
    assert [(e.line, e.column) for e in report.errors] == [(1, 17)]


def test_merge_keys_are_supported() -> None:
    text = """\
x-common: &common {type: chat, model: Meta-Llama-3_3-70B-Instruct}
steps:
  ask:
    <<: *common
    messages: [{role: user, content: Hello}]
"""
    with pytest.raises(PipelineInvalid, match="unknown key 'x-common'"):
        parse_pipeline_text(text, "p.yaml")
    text = text.replace("x-common: &common {type: chat, model: Meta-Llama-3_3-70B-Instruct}\n", "")
    text = text.replace("    <<: *common\n", "    <<: &common {type: chat, model: Meta-Llama-3_3-70B-Instruct}\n")
    assert parse_pipeline_text(text, "p.yaml").steps[0].model == "Meta-Llama-3_3-70B-Instruct"


def test_folders_skip_hidden_directories(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yml").write_text("on: push\n")
    (tmp_path / "p.yaml").write_text(MINIMAL)
    assert validate_paths([str(tmp_path)]).files == [str(tmp_path / "p.yaml")]


def test_empty_value_where_a_string_is_expected() -> None:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(
            MINIMAL.replace("[{role: user, content: Hello}]", "\n      - role: user\n        content:"), "p.yaml"
        )
    (error,) = caught.value.errors
    assert "got null" in error.message and "empty" in (error.hint or "")


def test_integral_float_seconds_are_a_duration() -> None:
    assert parse_duration(30.0) == timedelta(seconds=30)
    assert parse_duration(-0.0) == timedelta(0)


def test_integral_floats_become_integers() -> None:
    text = MINIMAL.replace("messages:", "max_tokens: 500.0\n    retries: 2.0\n    messages:") + "max_active_runs: 1.0\n"
    pipeline = parse_pipeline_text(text, "p.yaml")
    (step,) = pipeline.steps
    assert [type(value) for value in (pipeline.max_active_runs, step.max_tokens, step.options.retries)] == [int] * 3


def test_sampling_parameters_are_checked_and_typed() -> None:
    text = MINIMAL.replace("messages:", "seed: 7\n    presence_penalty: -2\n    frequency_penalty: 2\n    messages:")
    (step,) = parse_pipeline_text(text, "p.yaml").steps
    assert (step.seed, step.presence_penalty, step.frequency_penalty) == (7, -2, 2)
    bad = MINIMAL.replace("messages:", "seed: -1\n    presence_penalty: 2.5\n    messages:")
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(bad, "p.yaml")
    assert [error.message for error in caught.value.errors] == [
        "'seed' of step 'ask' must be at least 0, got -1",
        "'presence_penalty' of step 'ask' must be at most 2, got 2.5",
    ]

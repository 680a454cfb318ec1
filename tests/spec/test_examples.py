"""The example pipelines validate and mean what the seed's Python examples mean."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ovh_ai_dagfactory.spec import ChatStep, EmbeddingStep, parse_pipeline_file, validate_paths

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
EXAMPLES = sorted(PIPELINES.glob("*.yaml"))


def test_there_is_one_example_per_seed_example() -> None:
    assert {path.stem for path in EXAMPLES} >= {
        "basic_chat",
        "multi_turn_chat",
        "templated_daily_report",
        "single_embedding",
        "batch_embeddings",
        "chat_with_retries",
        "summarize_then_embed",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_validates_and_points_editors_at_the_schema(path: Path) -> None:
    pipeline = parse_pipeline_file(path)
    assert pipeline.steps
    assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/pipeline.schema.json\n")


def test_examples_validate_together() -> None:
    report = validate_paths([str(PIPELINES)])
    assert report.ok, [error.format() for error in report.errors]
    assert report.files_checked == len(EXAMPLES)


def test_basic_chat_matches_the_seed() -> None:
    pipeline = parse_pipeline_file(PIPELINES / "basic_chat.yaml")
    (step,) = pipeline.steps
    assert isinstance(step, ChatStep)
    assert (step.step_id, step.model, step.temperature, step.max_tokens) == (
        "generate_response",
        "Meta-Llama-3_3-70B-Instruct",
        0.7,
        500,
    )
    assert [(m.role, m.content) for m in step.messages] == [
        ("system", "You are a helpful assistant."),
        ("user", "Explain machine learning in simple terms."),
    ]
    assert pipeline.schedule is None
    assert pipeline.start_date == datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_templated_report_keeps_jinja_for_airflow() -> None:
    (step,) = parse_pipeline_file(PIPELINES / "templated_daily_report.yaml").steps
    assert step.model == "{{ var.value.llm_model }}"
    assert step.messages[1].content == "Generate a report summary for {{ ds }}"


def test_retries_become_task_options() -> None:
    (step,) = parse_pipeline_file(PIPELINES / "chat_with_retries.yaml").steps
    assert (step.options.retries, step.options.retry_delay) == (3, timedelta(seconds=30))


def test_batch_embeddings_keep_their_order() -> None:
    (step,) = parse_pipeline_file(PIPELINES / "batch_embeddings.yaml").steps
    assert isinstance(step, EmbeddingStep)
    assert step.input == ("First document to embed", "Second document to embed", "Third document to embed")


def test_summarize_then_embed_merges_defaults_and_chains_steps() -> None:
    pipeline = parse_pipeline_file(PIPELINES / "summarize_then_embed.yaml")
    summarize, embed = pipeline.steps
    assert (summarize.model, summarize.temperature, summarize.max_tokens) == ("Meta-Llama-3_3-70B-Instruct", 0.3, 100)
    assert embed.model == "BGE-M3"
    assert embed.input == "{{ steps.summarize.content }}"
    assert pipeline.upstream_of("embed_summary") == ("summarize",)
    assert pipeline.default_args.to_airflow() == {"owner": "data", "retries": 3, "retry_delay": timedelta(seconds=30)}

"""Airflow task and DAG settings written in YAML reach Airflow's objects, survive serialization, are
checked by `validate`, and name only what both Airflow lines accept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import round_trip

from ovh_ai_dagfactory.factory.builder import build_checked_dag
from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text
from ovh_ai_dagfactory.spec.task_options import TRIGGER_RULES, WEIGHT_RULES

PIPELINE = """\
schedule: null
max_active_tasks: 3
dagrun_timeout: 2h
owner_links: {data: "https://wiki.example.com/data"}
doc_md: "Runbook: restart it."
defaults:
  chat: {model: m, pool: llm_endpoint, queue: llm, retry_exponential_backoff: true, max_retry_delay: 10m}
steps:
  fan:
    type: chat
    for_each: [a, b]
    pool_slots: 2
    priority_weight: -5
    weight_rule: absolute
    owner: data
    max_active_tis_per_dag: 4
    messages: [{role: user, content: "{{ item }}"}]
  after:
    type: chat
    trigger_rule: all_done
    messages: [{role: user, content: "{{ steps.fan.contents }}"}]
  default_rule:
    type: embedding
    model: BGE-M3
    input: "{{ steps.fan.contents }}"
"""


def test_settings_reach_the_tasks_and_the_dag_and_survive_serialization():
    dag = build_checked_dag(parse_pipeline_text(PIPELINE, "/pipelines/options.yaml"))
    for candidate in (dag, round_trip(dag)):
        fan = candidate.get_task("fan")
        arguments = fan.partial_kwargs if hasattr(fan, "partial_kwargs") else vars(fan)
        assert arguments["pool"] == "llm_endpoint" and arguments["queue"] == "llm"
        assert arguments["pool_slots"] == 2 and arguments["priority_weight"] == -5
        assert str(arguments["weight_rule"]).endswith("absolute") and arguments["owner"] == "data"
        assert arguments["max_active_tis_per_dag"] == 4 and arguments["retry_exponential_backoff"] is True
        assert arguments["max_retry_delay"] == timedelta(minutes=10)
        # A rule the step sets wins over the fan-out's none_failed; otherwise none_failed applies.
        assert candidate.get_task("after").trigger_rule == "all_done"
        assert candidate.get_task("default_rule").trigger_rule == "none_failed"
        assert candidate.get_task("after").pool == "llm_endpoint"
    assert dag.max_active_tasks == 3 and dag.dagrun_timeout == timedelta(hours=2)
    assert dag.owner_links == {"data": "https://wiki.example.com/data"}
    assert dag.doc_md.startswith("Runbook: restart it.\n\nPipeline file: `/pipelines/options.yaml`")


def test_the_rules_are_those_both_airflow_lines_know():
    try:
        from airflow.task.trigger_rule import TriggerRule
        from airflow.task.weight_rule import WeightRule
    except ImportError:  # Airflow 2.11
        from airflow.utils.trigger_rule import TriggerRule  # type: ignore[no-redef]
        from airflow.utils.weight_rule import WeightRule  # type: ignore[no-redef]
    assert set(TRIGGER_RULES) <= {rule.value for rule in TriggerRule}
    assert set(WEIGHT_RULES) == {rule.value for rule in WeightRule}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    trigger_rule: all_sucess", "did you mean 'all_success'"),
        ("    weight_rule: heaviest", "downstream"),
        ("    pool_slots: 0", "pool_slots"),
        ("    max_retry_delay: soon", "is not a duration"),
    ],
)
def test_validate_checks_the_values(line: str, expected: str):
    text = PIPELINE.replace("    trigger_rule: all_done", line)
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    [error] = caught.value.errors
    assert error.line == 20 and expected in error.format()


def test_an_owner_link_airflow_would_refuse_is_reported_by_validate():
    text = PIPELINE.replace('"https://wiki.example.com/data"', '"not a link"')
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    [error] = caught.value.errors
    assert (error.line, error.column) == (4, 21) and "is not a link Airflow accepts" in error.message
    # What validate accepts, Airflow accepts: a mailto: address and an https URL.
    mail = PIPELINE.replace('"https://wiki.example.com/data"', '"mailto:data@example.com"')
    assert build_checked_dag(parse_pipeline_text(mail, "p.yaml")).owner_links == {"data": "mailto:data@example.com"}


PRODUCER = """\
schedule: "@daily"
start_date: 2024-01-01
steps:
  summarize:
    type: chat
    model: m
    outlets: ["s3://lake/reports/daily.json"]
    messages: [{role: user, content: hi}]
"""
CONSUMER = """\
schedule: ["s3://lake/reports/daily.json"]
start_date: 2024-01-01
steps:
  embed: {type: embedding, model: BGE-M3, input: "{{ ds }}"}
"""


def test_assets_schedule_a_pipeline_after_the_step_that_updates_them():
    from ovh_ai_dagfactory.compat import Asset

    producer = build_checked_dag(parse_pipeline_text(PRODUCER, "/pipelines/producer.yaml"))
    consumer = build_checked_dag(parse_pipeline_text(CONSUMER, "/pipelines/consumer.yaml"))
    assert producer.get_task("summarize").outlets == [Asset("s3://lake/reports/daily.json")]
    assert "Asset" in type(consumer.timetable).__name__ or "Dataset" in type(consumer.timetable).__name__
    for dag in (round_trip(producer), round_trip(consumer)):
        assert dag.dag_id in ("producer", "consumer")
    restored = round_trip(producer).get_task("summarize").outlets
    assert [getattr(asset, "uri", None) for asset in restored] == ["s3://lake/reports/daily.json"]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("schedule: []\nstart_date: 2024-01-01", "needs at least 1 item"),
        ('schedule: ["", "s3://x/y"]\nstart_date: 2024-01-01', "must not be empty"),
        ('schedule: ["s3://x/y"]', "a scheduled pipeline needs a 'start_date'"),
        ('schedule: ["s3://x/\\u00e9"]\nstart_date: 2024-01-01', "characters outside ASCII"),
        ('schedule: ["airflow://x"]\nstart_date: 2024-01-01', "uses the scheme 'airflow'"),
    ],
)
def test_validate_checks_an_asset_schedule(head: str, expected: str):
    text = CONSUMER.replace('schedule: ["s3://lake/reports/daily.json"]\nstart_date: 2024-01-01', head)
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    assert any(expected in error.format() for error in caught.value.errors), caught.value.errors

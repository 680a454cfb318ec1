"""`params`: plain defaults, or typed Airflow Params (a mapping with `type`) checked as Airflow checks them."""

from __future__ import annotations

import pytest

from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text

STEPS = "steps:\n  ask:\n    type: chat\n    model: m\n    messages: [{role: user, content: '{{ params.top_n }}'}]\n"


def errors(text: str) -> list[tuple[int, int, str, str | None]]:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    return [(error.line, error.column, error.message, error.hint) for error in caught.value.errors]


def test_plain_and_typed_params_are_kept_as_written() -> None:
    text = (
        "params:\n  audience: executives\n  config: {a: 1}\n  top_n: {type: integer, minimum: 1, default: 5}\n" + STEPS
    )
    assert parse_pipeline_text(text, "p.yaml").params == {
        "audience": "executives",
        "config": {"a": 1},
        "top_n": {"type": "integer", "minimum": 1, "default": 5},
    }


def test_a_default_that_does_not_match_its_type_is_reported_at_the_default() -> None:
    text = "params:\n  top_n: {type: integer, minimum: 1, default: 0}\n" + STEPS
    ((line, column, message, _),) = errors(text)
    assert (line, column) == (2, 47)
    assert message == "the default of param 'top_n' does not match it: 0 is less than the minimum of 1"


def test_an_invalid_param_schema_is_reported_inside_it() -> None:
    ((line, column, message, _),) = errors("params:\n  top_n: {type: integer, minimum: one}\n" + STEPS)
    assert (line, column) == (2, 35)
    assert message.startswith("param 'top_n' is not a valid JSON Schema: 'one' is not of type 'number'")


def test_a_scheduled_pipeline_needs_a_default_for_each_param() -> None:
    text = "schedule: '@daily'\nstart_date: 2024-01-01\nparams:\n  top_n: {type: integer}\n" + STEPS
    ((line, column, message, hint),) = errors(text)
    assert (line, column) == (4, 3)
    assert "has no default" in message and "schedule: null" in (hint or "")
    parse_pipeline_text(text.replace("schedule: '@daily'", "schedule: null"), "p.yaml")

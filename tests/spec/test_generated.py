"""What the field declarations produce is what is checked in: the schema file and the docs tables."""

from __future__ import annotations

import json

import pytest

from ovh_ai_dagfactory.spec import generate
from ovh_ai_dagfactory.spec.schema import pipeline_schema


@pytest.mark.parametrize("path", list(generate.outputs()), ids=lambda path: path.name)
def test_checked_in_file_is_what_the_declarations_produce(path) -> None:  # type: ignore[no-untyped-def]
    expected = generate.outputs()[path]
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path.name} is out of date: run python -m ovh_ai_dagfactory.spec.generate"
    )


def test_the_check_command_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--check"]) == 0, capsys.readouterr().err


def test_validation_uses_the_same_schema_as_the_file() -> None:
    assert json.loads(generate.SCHEMA_FILE.read_text(encoding="utf-8")) == pipeline_schema()


def test_shared_fields_are_defined_once_and_referenced() -> None:
    schema = pipeline_schema()
    text = json.dumps(schema)
    for name in ("retries", "retry_delay", "execution_timeout", "model", "duration", "connection_id"):
        assert name in schema["$defs"], name
        assert text.count(f'"#/$defs/{name}"') >= 2, name
    # A duration's pattern is written once, however many fields are durations.
    assert text.count('"^(?=\\\\d)') == 1

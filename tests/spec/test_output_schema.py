"""`output_schema` in a pipeline: inline or a .json file next to it, checked as a Draft 2020-12
schema with positions, and `steps.<id>.json` only where a step declares one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_file, parse_pipeline_text

PIPELINE = """\
steps:
  classify:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    output_schema:
      type: object
      properties:
        label: {{enum: [bug, feature]}}
      required: [label]
    messages: [{{role: user, content: Classify this ticket}}]
  route:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{{role: user, content: "Route a {{{{ steps.classify.{output} }}}}"}}]
"""


def errors(text: str, name: str = "p.yaml") -> list[tuple[int, int, str]]:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, name)
    return [(error.line, error.column, error.message) for error in caught.value.errors]


def test_inline_schema_is_kept_and_json_output_is_readable() -> None:
    pipeline = parse_pipeline_text(PIPELINE.format(output="json.label"), "p.yaml")
    classify, route = pipeline.steps
    assert classify.output_schema == {
        "type": "object",
        "properties": {"label": {"enum": ["bug", "feature"]}},
        "required": ["label"],
    }
    assert route.output_schema is None
    assert pipeline.upstream_of("route") == ("classify",)


def test_an_invalid_schema_is_reported_inside_it() -> None:
    text = PIPELINE.format(output="json").replace("required: [label]", "required: label")
    ((line, column, message),) = errors(text)
    assert (line, column) == (9, 17)  # the value of `required`, inside the schema
    assert message.startswith("output_schema of step 'classify' is not a valid JSON Schema: 'label' is not of type")


def test_json_needs_an_output_schema() -> None:
    text = PIPELINE.format(output="content").replace(
        "Route a {{ steps.classify.content }}", "Route a {{ steps.route_input.json }}"
    )
    text += "  route_input:\n    type: chat\n    model: m\n    messages: [{role: user, content: x}]\n"
    ((_, _, message),) = errors(text)
    assert message == "step 'route_input' has no output_schema, so step 'route' cannot read 'steps.route_input.json'"


def test_schema_from_a_file_next_to_the_pipeline(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"topics": {"type": "array", "items": {"type": "string"}}}}
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "topics.json").write_text(json.dumps(schema))
    text = PIPELINE.format(output="json").split("  route:")[0]
    text = text.replace(
        text[text.index("    output_schema:") : text.index("    messages:")], "    output_schema: schemas/topics.json\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    (step,) = parse_pipeline_file(tmp_path / "p.yaml").steps
    assert step.output_schema == schema
    (tmp_path / "schemas" / "topics.json").write_text("{not json")
    with pytest.raises(PipelineInvalid, match="cannot be read: schemas/topics.json is not JSON"):
        parse_pipeline_file(tmp_path / "p.yaml")
    (tmp_path / "schemas" / "topics.json").unlink()
    with pytest.raises(PipelineInvalid, match="cannot be read: schemas/topics.json: cannot read the file"):
        parse_pipeline_file(tmp_path / "p.yaml")


def test_json_names_are_checked_against_the_schema_properties() -> None:
    ((line, column, message),) = errors(PIPELINE.format(output="json.lable"))
    assert (line, column) == (14, 38)  # the message content holding the template
    assert message == "the output_schema of step 'classify' has no property 'lable' (read as steps.classify.json.lable)"
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(PIPELINE.format(output="json.lable"), "p.yaml")
    assert caught.value.errors[0].hint == "did you mean 'label'?"
    # Through Jinja's parser too (a filter makes it more than a dotted name).
    assert len(errors(PIPELINE.format(output="json.lable | upper"))) == 1
    # A schema that allows other properties does not restrict the names read.
    open_schema = PIPELINE.format(output="json.anything").replace(
        "required: [label]", "required: [label]\n      additionalProperties: true"
    )
    parse_pipeline_text(open_schema, "p.yaml")

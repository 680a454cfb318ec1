"""`for_each` in `validate`: what a fan-out step may say and what later steps may read of it, with
positions and hints; and the native-value rule both `validate` and the operators use."""

from __future__ import annotations

import pytest
from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_text
from ovh_ai_dagfactory.spec.native_values import NotNative, render_native, whole_expression

GOOD = """\
params:
  documents: {type: array, default: [a, b]}
steps:
  extract:
    type: chat
    model: m
    output_schema: {type: object, properties: {topics: {type: array}}, required: [topics]}
    messages: [{role: user, content: "Topics of {{ params.documents | join(' ') }}"}]
  explain:
    type: chat
    model: m
    for_each: "{{ steps.extract.json.topics }}"
    max_parallel: 8
    messages: [{role: user, content: "Explain {{ item }} ({{ item_index }})"}]
  embed:
    type: embedding
    model: BGE-M3
    input: "{{ steps.explain.contents }}"
  literal:
    type: embedding
    model: BGE-M3
    for_each: [{text: one}, {text: two}]
    input: "{{ item.text }}"
  loop:
    type: chat
    model: m
    messages: [{role: user, content: "{% for item in params.documents %}{{ item }}{% endfor %}"}]
"""


def errors(text: str) -> list[tuple[int, int, str, str | None]]:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "p.yaml")
    return [(error.line, error.column, error.message, error.hint) for error in caught.value.errors]


def test_a_fan_out_pipeline_is_valid_and_typed():
    pipeline = parse_pipeline_text(GOOD, "p.yaml")
    explain = pipeline.step("explain")
    assert explain.for_each == "{{ steps.extract.json.topics }}" and explain.max_parallel == 8
    assert pipeline.step("literal").for_each == ({"text": "one"}, {"text": "two"})
    assert pipeline.step("extract").for_each is None
    assert pipeline.upstream_of("explain") == ("extract",)
    assert pipeline.upstream_of("embed") == ("explain",)


def _with(step: str) -> str:
    return GOOD + step


def test_the_singular_output_of_a_fan_out_step_hints_at_the_plural():
    found = errors(GOOD.replace("steps.explain.contents", "steps.explain.content"))
    assert found == [
        (
            18,
            12,
            "step 'explain' runs once per item (for_each), so step 'embed' cannot read 'steps.explain.content'",
            "read steps.explain.contents (a list in item order)",
        )
    ]


def test_the_plural_output_of_a_plain_step_hints_at_the_singular():
    found = errors(GOOD.replace("Topics of {{ params", "Topics of {{ steps.loop.contents }} {{ params"))
    assert [(message, hint) for _, _, message, hint in found] == [
        (
            "step 'loop' runs once (it has no for_each), so step 'extract' cannot read 'steps.loop.contents'",
            "read steps.loop.content (one result)",
        )
    ]


def test_jsons_needs_an_output_schema_and_embeddings_stays_embeddings():
    text = _with(
        '  report:\n    type: chat\n    model: m\n    messages: [{role: user, content: "{{ steps.literal.embeddings }}'
        ' {{ steps.explain.jsons }}"}]\n'
    )
    [(line, _, message, hint)] = errors(text)
    assert line == 31 and message.startswith("step 'explain' has no output_schema, so step 'report' cannot read")
    assert hint == "add 'output_schema' to step 'explain', or read steps.explain.contents"


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "  x:\n    type: chat\n    model: m\n    max_parallel: 2\n    messages: [{role: user, content: hi}]\n",
            (31, 5, "step 'x' sets max_parallel but has no for_each"),
        ),
        (
            "  x:\n    type: chat\n    model: m\n    messages: [{role: user, content: 'Say {{ item }}'}]\n",
            (31, 38, "step 'x' reads 'item', which only steps with for_each have"),
        ),
        (
            "  x:\n    type: embedding\n    model: m\n    input: '{{ item_index }}'\n",
            (31, 12, "step 'x' reads 'item_index', which only steps with for_each have"),
        ),
        (
            "  x:\n    type: chat\n    model: m\n    for_each: 'a, b'\n    messages: [{role: user, content: hi}]\n",
            (31, 15, "'for_each' of step 'x' is neither a list nor a template: 'a, b'"),
        ),
        (
            "  x:\n    type: chat\n    model: m\n    for_each: 'topics: {{ params.documents }}'\n"
            "    messages: [{role: user, content: hi}]\n",
            (31, 15, "for_each must be one {{ expression }} giving a list, with nothing around it"),
        ),
        (
            "  x:\n    type: chat\n    model: m\n    for_each: '{{ item }}'\n    messages: [{role: user, content: hi}]\n",
            (31, 15, "for_each cannot read item or item_index: they are what it defines"),
        ),
        (
            "  explain__for_each:\n    type: chat\n    model: m\n    messages: [{role: user, content: hi}]\n",
            (28, 3, "step id 'explain__for_each' is the name of the task that computes step 'explain''s for_each list"),
        ),
    ],
    ids=["max_parallel-alone", "item-outside", "item_index-outside", "plain-text", "text-around", "self", "clash"],
)
def test_fan_out_mistakes_are_reported_where_they_are(step: str, expected: tuple[int, int, str]):
    found = [(line, column, message) for line, column, message, _ in errors(_with(step))]
    assert found == [expected]


# -- native values --------------------------------------------------------------------------------

ENV = SandboxedEnvironment(undefined=StrictUndefined)
CONTEXT = {"params": {"documents": ["a", "b"], "answer": "42", "size": 3}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{{ params.documents }}", ["a", "b"]),
        ("  {{ params.documents }}\n", ["a", "b"]),  # a YAML block scalar's newline
        ("{{ params.size }}", 3),
        ("{{ params.answer }}", "42"),  # a string stays the string it is: no literal_eval
        ("{{ params.documents | map('upper') | list }}", ["A", "B"]),
        ("{{ {'k': params.size} }}", {"k": 3}),
    ],
)
def test_one_whole_expression_gives_its_own_value(text: str, value: object):
    assert render_native(ENV, text, CONTEXT) == value


@pytest.mark.parametrize(
    "text",
    [
        "Docs: {{ params.documents }}",
        "{{ params.size }}{{ params.size }}",
        "{% if 1 %}{{ params.size }}{% endif %}",
        "x",
    ],
)
def test_anything_else_is_text(text: str):
    assert whole_expression(ENV, text) is None
    with pytest.raises(NotNative):
        render_native(ENV, text, CONTEXT)


def test_native_values_keep_the_sandbox_and_strict_undefined():
    with pytest.raises(Exception, match="unsafe|access"):
        render_native(ENV, "{{ params.__class__.__mro__ }}", CONTEXT)
    with pytest.raises(Exception, match="missing"):
        render_native(ENV, "{{ params.missing }}", CONTEXT)
    with pytest.raises(TemplateSyntaxError):
        whole_expression(ENV, "{{ params. }}")

"""Property-based: whatever a user writes, the parser answers with a Pipeline or PipelineInvalid.

Also: the compiled schema check (the fast path) agrees with jsonschema on every generated document.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovh_ai_dagfactory.spec import Pipeline, PipelineInvalid, parse_pipeline_file, parse_pipeline_text
from ovh_ai_dagfactory.spec.schema import _fast_check, _validator

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
EXAMPLES = [yaml.safe_load(path.read_text()) for path in sorted(PIPELINES.glob("*.yaml"))]

# Words the format uses, so random documents hit real code paths and not only "unknown key".
VOCABULARY = [
    "dag_id",
    "description",
    "schedule",
    "start_date",
    "end_date",
    "catchup",
    "tags",
    "default_args",
    "connection",
    "defaults",
    "steps",
    "params",
    "max_active_runs",
    "chat",
    "embedding",
    "type",
    "model",
    "messages",
    "role",
    "content",
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "input",
    "depends_on",
    "retries",
    "retry_delay",
    "execution_timeout",
    "owner",
    "email",
    "system",
    "user",
    "assistant",
    "summarize",
    "embed",
    "a",
    "b",
    "30s",
    "5m",
    "@daily",
    "2024-01-01",
    "{{ steps.summarize.content }}",
    "{{ steps.a.embeddings }}",
    "{{ ds }",
    "{% if x %}",
    "{{ steps.x }}",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 600),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(VOCABULARY),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=6), children, max_size=5),
    ),
    max_leaves=25,
)


def parses_or_is_invalid(text: str, source_file: str = "generated.yaml") -> None:
    try:
        result = parse_pipeline_text(text, source_file)
    except PipelineInvalid as invalid:
        assert invalid.errors
        assert all(error.line >= 1 and error.column >= 1 for error in invalid.errors)
    else:
        assert isinstance(result, Pipeline)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list(" \n\t:-[]{}&*!|>#'\"?,%@`~.0123456789abcsteps")), max_size=300))
def test_random_yaml_looking_text(text: str) -> None:
    parses_or_is_invalid(text)


@SETTINGS
@given(st.text(max_size=200))
def test_random_unicode_text(text: str) -> None:
    parses_or_is_invalid(text)


@SETTINGS
@given(VALUES)
def test_random_structures_dumped_to_yaml(value: Any) -> None:
    parses_or_is_invalid(yaml.safe_dump(value, allow_unicode=True))


def _mutate(document: Any, data: st.DataObject) -> Any:
    """Replace, delete or add one value somewhere in a valid pipeline."""
    document = copy.deepcopy(document)
    node = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if not isinstance(child, (dict, list)) or data.draw(st.booleans()):
            action = data.draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = data.draw(VALUES)
            elif action == "delete":
                del node[key]
            elif isinstance(node, dict):
                node[data.draw(st.sampled_from(VOCABULARY))] = data.draw(VALUES)
            else:
                node.append(data.draw(VALUES))
            break
        node = child
    return document


@SETTINGS
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_valid_pipelines(example: Any, data: st.DataObject) -> None:
    mutated = _mutate(example, data)
    parses_or_is_invalid(yaml.safe_dump(mutated, allow_unicode=True, sort_keys=False))


@SETTINGS
@given(st.sampled_from(EXAMPLES), st.data())
def test_fast_schema_check_agrees_with_jsonschema(example: Any, data: st.DataObject) -> None:
    document = yaml.safe_load(yaml.safe_dump(_mutate(example, data)))  # dates as the loader gives them
    document = _stringify_dates(document)
    assert _fast_check()(document) == _validator().is_valid(document)


@SETTINGS
@given(VALUES)
def test_fast_schema_check_agrees_on_random_documents(value: Any) -> None:
    assert _fast_check()(value) == _validator().is_valid(value)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file(tmp_path_factory: Any, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "random.yaml"
    path.write_bytes(raw)
    try:
        parse_pipeline_file(path)
    except PipelineInvalid:
        pass


def _stringify_dates(value: Any) -> Any:
    import datetime

    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _stringify_dates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stringify_dates(item) for item in value]
    return value

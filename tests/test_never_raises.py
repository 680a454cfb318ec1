"""The promise behind "one broken pipeline never hides the valid ones", fuzzed across the layers:

for any content of a pipeline file, the spec layer returns a `Pipeline` or positioned
`PipelineError`s; `validate` and `render` exit 0 or 1 (never a traceback, never an internal error);
`load_pipelines` returns, with the file either loaded or rejected under its own path; and what
`validate` accepts, the loader (that is, Airflow) accepts too.

Structure-aware: each example takes a valid example pipeline and rewrites one to three key
positions (existing keys, or any key the schema knows, at any depth) with values of every YAML type:
huge and negative numbers, long and odd strings, deep nesting, deep Jinja, odd dates, durations and
crons. FUZZ_EXAMPLES sets the number of examples (default 5,000, the CI run). The examples are the
same in every run (derandomized), so CI is reproducible; FUZZ_RANDOM=1 explores new ones (run it
with a large FUZZ_EXAMPLES before a release, and turn whatever it finds into a fix and a test).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from argparse import Namespace
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ovh_ai_dagfactory.spec import Pipeline, PipelineInvalid, parse_pipeline_text

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = [yaml.safe_load(path.read_text()) for path in sorted((REPO / "pipelines").glob("*.yaml"))]
EXAMPLES = [json.loads(json.dumps(example, default=str)) for example in EXAMPLES]  # dates as the loader keeps them
EXAMPLES_COUNT = int(os.environ.get("FUZZ_EXAMPLES", "5000"))
RANDOM = os.environ.get("FUZZ_RANDOM", "") not in ("", "0")


def _schema_keys(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                found.update(value)
            _schema_keys(value, found)
    elif isinstance(node, list):
        for item in node:
            _schema_keys(item, found)
    return found


SCHEMA_KEYS = sorted(_schema_keys(json.loads((REPO / "schemas" / "pipeline.schema.json").read_text()), set()))

ODD_STRINGS = [
    "",
    " ",
    "~",
    "null",
    "yes",
    "no",
    "on",
    "0x1F",
    "1e23",
    ".inf",
    "-.nan",
    "\u202e\u0000x",
    "\ufeff",
    "é" * 300,
    "61 * * * *",
    "* * 31 2 *",
    "0 0 * * 7",
    "@continuous",
    "@once",
    "@dayly",
    "@midnight",
    "*/0 * * * *",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01",
    "2024-02-30",
    "1000-01-01T00:00:00+14:00",
    "2024-01-01",
    "1000000000d",
    "0s",
    "999999999999999999999s",
    "1h30m",
    "365d",
    "366d",
    "30s",
    "{{ steps.summarize.content }}",
    "{{ steps.nope.content }}",
    "{{ steps.summarize }}",
    "{{ steps['x'].y }}",
    "{% for x in y %}{{ x }}{% endfor %}",
    "{{ ds }",
    "{# c #}",
    "{{ params.x | default('y') }}",
    "a" * 251,
    "x" * 5000,
    "bad id!",
    "Meta-Llama-3_3-70B-Instruct",
    "user",
    "system",
    "assistant",
]


def deep_jinja(depth: int) -> str:
    return "{{ " + "(" * depth + "1" + ")" * depth + " }}"


def deep_blocks(depth: int) -> str:
    return "{% if x %}" * depth + "y" + "{% endif %}" * depth


def deep_list(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63, 10**23, 31536000, 31536001]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e-308, 0.5, 1e23, -0.0, 2.0]),
    st.text(max_size=30),
    st.sampled_from(ODD_STRINGS),
    st.sampled_from(SCHEMA_KEYS),
    st.integers(1, 3000).map(deep_jinja),
    st.integers(1, 400).map(deep_blocks),
)
VALUES = st.one_of(
    SCALARS,
    st.integers(1, 120).map(deep_list),
    st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.sampled_from(SCHEMA_KEYS) | st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=12,
    ),
)


# Values of the right kind for most fields, so that many mutated files stay valid and go all the way
# into Airflow (params of any shape, crons, dates, durations, ids, text).
CRON_FIELDS = st.sampled_from(["*", "0", "5", "23", "59", "*/5", "1-5", "1,15", "MON", "L", "?", "60", "32", "H"])
# Typed params and output schemas, valid and not, so the Param and schema paths reach Airflow too.
SCHEMA_LIKE = st.sampled_from(
    [
        {"type": "integer", "default": 3},
        {"type": "integer", "default": "x"},
        {"type": "string", "enum": []},
        {"type": "bogus"},
        {"type": "integer"},
        {"type": ["string", "null"], "default": None},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {},
        {"type": "array", "items": 3},
        {"type": "number", "minimum": "one"},
        {"type": "string", "pattern": "("},
    ]
).map(copy.deepcopy)  # a fresh copy each time: mutate() edits documents in place
PLAUSIBLE = st.one_of(
    st.integers(0, 100),
    st.floats(0, 1),
    st.booleans(),
    st.text(max_size=40),
    st.lists(CRON_FIELDS, min_size=5, max_size=6).map(" ".join),
    st.sampled_from(["@daily", "@hourly", "@once", "@weekly", "@continuous", None]),
    st.integers(0, 400).map(lambda days: f"{days}d"),
    st.integers(0, 10**6).map(lambda seconds: f"{seconds}s"),
    st.dates().map(lambda day: day.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,20}\Z"),
    st.dictionaries(
        st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"), SCALARS | st.lists(SCALARS, max_size=3), max_size=3
    ),
    st.lists(st.text(max_size=10), max_size=3),
    SCHEMA_LIKE,
    st.dictionaries(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"), SCHEMA_LIKE, max_size=3),
)


STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(ODD_STRINGS),
    st.integers(1, 3000).map(deep_jinja),
    st.lists(CRON_FIELDS, min_size=5, max_size=6).map(" ".join),
    st.dates().map(lambda day: day.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.integers(-3, 600), st.floats(allow_nan=False, allow_infinity=False)
)


def same_kind(value: Any) -> st.SearchStrategy[Any]:
    """A new value of the same YAML type: such files often stay valid and reach Airflow."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, (int, float)):
        return NUMBERS
    if isinstance(value, str):
        return STRINGS
    return PLAUSIBLE


def mutate(document: Any, data: st.DataObject) -> Any:
    """Rewrite one key position somewhere in the document: replace its value, delete it, or add a key."""
    node = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            return document
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and data.draw(st.integers(0, 3)):  # usually go deeper
            node = child
            continue
        action = data.draw(st.sampled_from(["same kind", "same kind", "replace", "replace", "delete", "add"]))
        values = VALUES | PLAUSIBLE
        if action == "same kind":
            node[key] = data.draw(same_kind(child))
        elif action == "replace":
            node[key] = data.draw(values)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[data.draw(st.sampled_from(SCHEMA_KEYS))] = data.draw(values)
        else:
            node.append(data.draw(values))
        return document


def check_spec(text: str, path: str) -> bool:
    """True when the file is a valid pipeline; otherwise every error is positioned and none is ours."""
    try:
        result = parse_pipeline_text(text, path)
    except PipelineInvalid as invalid:
        assert invalid.errors
        for error in invalid.errors:
            assert error.line >= 1 and error.column >= 1 and error.file == path, error
            assert not error.internal, error.format()
        return False
    assert isinstance(result, Pipeline)
    return True


def check_cli(path: str, valid: bool) -> None:
    from ovh_ai_dagfactory.cli import render_command, validate_command

    for command, args in (
        (validate_command, Namespace(paths=[path], format="json")),
        (render_command, Namespace(file=path, format="text")),
        (render_command, Namespace(file=path, format="mermaid")),
    ):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = command.run(args)
        assert code == (0 if valid else 1), (command.__name__, code, out.getvalue()[-2000:], err.getvalue()[-2000:])


def check_loader(folder: str, path: str, valid: bool) -> None:
    from ovh_ai_dagfactory.factory.loader import load_pipelines

    result = load_pipelines(folder, {"__name__": "fuzz_loader"}, cache_dir=False)
    errors = result.errors()
    assert not [error for error in errors if error.internal], [error.format() for error in errors]
    if valid:  # what validate accepts, Airflow accepts
        assert list(result.loaded.values()) == [path], [error.format() for error in errors]
    else:
        assert list(result.rejected) == [path] and not result.loaded


@settings(
    max_examples=EXAMPLES_COUNT,
    deadline=None,
    database=None,
    derandomize=not RANDOM,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(st.sampled_from(EXAMPLES), st.integers(1, 3), st.data())
def test_no_file_content_takes_down_validate_render_or_the_loader(
    example: Any, mutations: int, data: st.DataObject
) -> None:
    document = copy.deepcopy(example)
    for _ in range(mutations):
        document = mutate(document, data)
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzzed.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        valid = check_spec(text, path)
        event("valid" if valid else "invalid")
        check_cli(path, valid)
        check_loader(folder, path, valid)

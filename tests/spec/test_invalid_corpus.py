"""Every file in tests/spec/invalid/ holds one mistake, described by its first line:

    # expect: LINE:COL message fragment

The parser must reject the file with an error at exactly that position whose message contains
the fragment.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_file

INVALID = Path(__file__).parent / "invalid"
EXPECT = re.compile(rb"^# expect: (\d+):(\d+) (.+)$")


def expectation(path: Path) -> tuple[int, int, str]:
    first_line = path.read_bytes().split(b"\n", 1)[0]
    match = EXPECT.match(first_line)
    assert match, f"{path.name} has no '# expect: LINE:COL fragment' first line"
    return int(match[1]), int(match[2]), match[3].decode("utf-8")


CORPUS = sorted(INVALID.glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
def test_invalid_pipeline_is_reported_at_its_position(path: Path) -> None:
    line, column, fragment = expectation(path)
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_file(path)
    errors = caught.value.errors
    found = [(error.line, error.column, error.message) for error in errors]
    assert any((e.line, e.column) == (line, column) and fragment in e.message for e in errors), found
    assert all(error.file == str(path) for error in errors)

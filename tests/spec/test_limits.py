"""The limits that keep one file from taking down `validate` or the loader: only regular files are
read, under a size cap; value counts are capped with messages that say why."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ovh_ai_dagfactory.spec import PipelineInvalid, parse_pipeline_file, parse_pipeline_text, validate_paths
from ovh_ai_dagfactory.spec.parse import DEFAULT_MAX_FILE_BYTES, MAX_FILE_BYTES_ENV, read_pipeline_bytes
from ovh_ai_dagfactory.spec.yaml_loader import MAX_NODES

VALID = "steps:\n  ask:\n    type: chat\n    model: m\n    messages: [{role: user, content: Hello}]\n"


def errors_of(path: Path) -> list[tuple[int, int, str]]:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_file(path)
    return [(error.line, error.column, error.message) for error in caught.value.errors]


def finishes_within(seconds: float, work) -> object:  # type: ignore[no-untyped-def]
    """Run `work` in a thread; fail (instead of hanging the suite) when it takes longer."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_fifo_named_yaml_is_refused_at_once_and_the_folder_still_validates(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.yaml")
    (tmp_path / "good.yaml").write_text(VALID)
    report = finishes_within(10, lambda: validate_paths([str(tmp_path)]))
    assert list(report.pipelines) == [str(tmp_path / "good.yaml")]
    (error,) = report.errors
    assert (error.file, error.line, error.column) == (str(tmp_path / "x.yaml"), 1, 1)
    assert "not a regular file (a named pipe)" in error.message


def test_a_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    assert "not a regular file (a character device)" in finishes_within(10, lambda: errors_of(link))[0][2]


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text(VALID)
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real.yaml")
    assert parse_pipeline_file(tmp_path / "link.yaml").dag_id == "link"


def test_a_folder_named_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    assert errors_of(tmp_path / "folder.yaml") == [
        (1, 1, "not a regular file (a folder); only regular files are read as pipelines")
    ]


def test_size_cap_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(VALID + "#" * DEFAULT_MAX_FILE_BYTES + "\n")
    ((line, column, message),) = errors_of(big)
    assert (line, column) == (1, 1)
    assert f"limit {DEFAULT_MAX_FILE_BYTES} bytes" in message
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, str(4 * DEFAULT_MAX_FILE_BYTES))
    assert parse_pipeline_file(big).dag_id == "big"
    assert len(read_pipeline_bytes(str(big), max_bytes=10_000_000)) == big.stat().st_size
    with pytest.raises(PipelineInvalid, match="limit 100 bytes"):
        read_pipeline_bytes(str(big), max_bytes=100)


def test_too_many_values_without_aliases_names_the_size_not_aliases() -> None:
    text = VALID + "params:\n  big: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n"
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "big.yaml")
    (error,) = caught.value.errors
    assert f"holds more than {MAX_NODES} values (1 steps)" in error.message
    assert "alias" not in error.message


def test_many_steps_are_reported_as_a_size_problem() -> None:
    step = "  s{0}:\n    type: chat\n    model: m\n    messages: [{{role: user, content: 'hello {0}'}}]\n"
    text = "steps:\n" + "".join(step.format(index) for index in range(30_000))
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "huge.yaml")
    (error,) = caught.value.errors
    assert "(30000 steps)" in error.message and "alias" not in error.message


def test_alias_expansion_is_named_when_aliases_are_used() -> None:
    text = "a: &a [" + ",".join(["x"] * 1000) + "]\nb: [" + ",".join(["*a"] * 300) + "]\n"
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline_text(text, "bomb.yaml")
    (error,) = caught.value.errors
    assert (error.line, "anchors and aliases are repeated") == (2, "anchors and aliases are repeated")
    assert "the value of 'b' expands" in error.message


def test_a_few_thousand_steps_still_validate() -> None:
    step = "  s{0}:\n    type: chat\n    model: m\n    messages: [{{role: user, content: 'hello {0}'}}]\n"
    text = "steps:\n" + "".join(step.format(index) for index in range(2_000))
    assert len(parse_pipeline_text(text, "many.yaml").steps) == 2_000

"""Fixtures for the DAG factory's tests: the example pipelines as DAGs, scratch pipeline folders, and
our stub servers (plain, and with the Batch API) with the default connection pointing at them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, TEST_TOKEN, point_connection_at
from ovh_batch_stub import OVHBatchStub
from ovh_stub import OVHStub

EXAMPLES = REPO_ROOT / "pipelines"

#: A pipeline with one mistake, at a known position (7:18: temperature 7 is above 2).
BROKEN = """\
schedule: null
start_date: 2024-01-01
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    temperature: 7
    messages:
      - {role: user, content: Hello}
"""


@pytest.fixture(scope="session")
def example_pipelines() -> Any:
    """Every example pipeline loaded through the loader, as a real DAG folder file would (no cache)."""
    from ovh_ai_dagfactory import load_pipelines

    namespace: dict[str, Any] = {"__file__": str(REPO_ROOT / "dags_loader.py")}
    result = load_pipelines(EXAMPLES, namespace, cache_dir=False)
    assert not result.rejected, result.errors()
    return result


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    """Write a pipeline file (dedented YAML) into a scratch folder; returns its path."""

    def write(name: str, text: str, folder: Path | None = None) -> Path:
        target = (folder or tmp_path / "pipelines") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return target

    return write


CHAT_PIPELINE = """
    description: {description}
    schedule: null
    start_date: 2024-01-01
    steps:
      ask:
        type: chat
        model: Meta-Llama-3_3-70B-Instruct
        messages:
          - {{role: user, content: "Hello"}}
"""


def chat_pipeline(description: str = "a test pipeline", dag_id: str | None = None) -> str:
    text = CHAT_PIPELINE.format(description=description)
    return (f"dag_id: {dag_id}\n" if dag_id else "") + textwrap.dedent(text).lstrip()


def _serving(server_class: type[OVHStub], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with server_class(token=TEST_TOKEN) as server:
        point_connection_at(monkeypatch, server.base_url)
        yield server


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[OVHStub]:
    """Our stub server (tests/ovh_stub.py), fresh for the test, `ovh_ai_endpoints_default` pointing at it."""
    yield from _serving(OVHStub, monkeypatch)


@pytest.fixture
def batch_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[OVHBatchStub]:
    """The stub with the Batch API (tests/ovh_batch_stub.py), like `stub`."""
    yield from _serving(OVHBatchStub, monkeypatch)

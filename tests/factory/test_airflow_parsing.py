"""The loader inside Airflow's own parsing: a DagBag over a DAG folder holding the two-line loader
file, valid pipelines and a broken one; and the DAG processor's own parse function, which is what
puts import errors where the UI and the REST API read them."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from tests.factory.conftest import BROKEN

LOADER_FILE = """\
# airflow DAG loader: one DAG per pipeline file in ./pipelines (ovh-ai-dagfactory)
from ovh_ai_dagfactory import load_pipelines

load_pipelines(None, globals(), cache_dir=False)
"""
EXAMPLE_DAG_IDS = {
    "chat_completion_example",
    "multi_turn_chat",
    "templated_example",
    "single_embedding",
    "batch_embeddings",
    "chat_with_retry",
    "summarize_then_embed",
    "classify_ticket",
    "explain_topics",
    "embed_corpus",
    "classify_tickets",
}
ERROR_LINE = re.compile(r"broken\.yaml:7:18: error: .*temperature")


@pytest.fixture
def dag_folder(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("OVH_AI_DAGFACTORY_PIPELINES_FOLDER", raising=False)
    folder = tmp_path / "dags"
    shutil.copytree(REPO_ROOT / "pipelines", folder / "pipelines")
    (folder / "pipelines" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    (folder / "ovh_pipelines.py").write_text(LOADER_FILE, encoding="utf-8")
    return folder


def _dagbag(folder: Path, airflow_major: int):
    if airflow_major >= 3:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(folder), safe_mode=True)
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(folder), include_examples=False, safe_mode=True)


def test_dagbag_has_every_valid_dag_and_the_broken_files_error(dag_folder, airflow_major):
    bag = _dagbag(dag_folder, airflow_major)
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS  # safe mode kept the loader file; nothing hidden
    loader = str(dag_folder / "ovh_pipelines.py")
    assert all(dag.fileloc == loader for dag in bag.dags.values())  # workers re-parse the loader
    assert loader not in bag.import_errors  # the loader's own DAGs stay healthy
    [(filename, text)] = bag.import_errors.items()
    assert filename == str(dag_folder / "pipelines" / "broken.yaml")
    assert ERROR_LINE.search(text), text


def test_dag_processor_files_the_error_under_the_yaml_file(dag_folder, airflow_db, airflow_major):
    """What the UI banner and GET /importErrors show, produced by Airflow's own processing code."""
    loader = str(dag_folder / "ovh_pipelines.py")
    if airflow_major >= 3:
        from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

        request = DagFileParseRequest(file=loader, bundle_path=dag_folder, bundle_name="dags-folder")
        result = _parse_file(request, log=_structlog())
        assert {dag.dag_id for dag in result.serialized_dags} == EXAMPLE_DAG_IDS
        assert set(result.import_errors) == {"pipelines/broken.yaml"}
        assert ERROR_LINE.search(result.import_errors["pipelines/broken.yaml"])
        return
    from airflow.dag_processing.processor import DagFileProcessor
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session

    processor = DagFileProcessor(dag_ids=None, dag_directory=str(dag_folder), log=logging.getLogger(__name__))
    processor.process_file(loader, callback_requests=[])
    broken = str(dag_folder / "pipelines" / "broken.yaml")
    with create_session() as session:
        rows = {row.filename: row.stacktrace for row in session.query(ParseImportError)}
    assert loader not in rows and ERROR_LINE.search(rows[broken])
    # Fixed file: the next parse of the loader clears its error.
    (dag_folder / "pipelines" / "broken.yaml").write_text(BROKEN.replace("temperature: 7", "temperature: 1"))
    processor.process_file(loader, callback_requests=[])
    with create_session() as session:
        assert session.query(ParseImportError).filter_by(filename=broken).count() == 0


def _structlog():
    import structlog

    return structlog.get_logger()

"""Broken pipeline files as Airflow import errors: the "DAG Import Errors" banner, `GET /importErrors`.

Why this way: an import error is where every Airflow user already looks for a file that does not
load, on both Airflow lines, in the UI and through the REST API. The loader file itself must not
raise (Airflow would drop every DAG of the file, hiding the valid pipelines), and the error must
not be filed under the loader file's path either (Airflow then flags every DAG of that file as
broken: 2.11 stops scheduling them, 3.3 marks them stale). So each broken YAML file gets its own
import error, keyed by the YAML file's own path, in the DagBag that is importing the loader file.

Airflow has no public way for a DAG file to reach that DagBag; we find it on the call stack (the
DagBag method that imports the file is a few frames up, on 2.11 and on 3.3). When it is absent —
the loader called from a plain script, or a future Airflow that parses differently — nothing is
recorded there; the errors are still logged and returned in `LoadResult.rejected`.

Airflow's housekeeping knows only `.py` files: it deletes import errors of other files when it
rescans the DAG folder (every `dag_dir_list_interval`), and the next parse of the loader file
(every `min_file_process_interval`) files them again. On 2.11 a fixed file's error is cleared at
the loader's next parse; on 3.3 at the next folder rescan.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from ovh_ai_dagfactory.spec.errors import PipelineError

log = logging.getLogger(__name__)

#: How far up the stack to look for the DagBag (2.11: ~4 frames, 3.3: ~6 frames from the loader).
_MAX_FRAMES = 40


def format_errors(errors: Iterable[PipelineError]) -> str:
    """The text Airflow shows for the file: one `FILE:LINE:COL: error: message` (and hint) per problem."""
    return "\n".join(error.format() for error in errors)


def importing_dagbag() -> Any | None:
    """The Airflow DagBag currently importing the calling DAG file, if there is one."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if candidate is not None and _is_dagbag(candidate):
            return candidate
        frame = frame.f_back
    return None


def _is_dagbag(value: Any) -> bool:
    # By name and shape, not isinstance: the class lives in different modules on 2.11 and 3.3,
    # and importing either just to compare would cost parse time.
    if not any(klass.__name__ == "DagBag" for klass in type(value).__mro__):
        return False
    return isinstance(getattr(value, "import_errors", None), dict) and isinstance(
        getattr(value, "file_last_changed", None), dict
    )


def report_to_dagbag(rejected: Mapping[str, Iterable[PipelineError]], parsed_files: Iterable[str], dagbag: Any) -> None:
    """File one import error per rejected pipeline file in `dagbag` (the `importing_dagbag()`).

    `parsed_files` (every pipeline file looked at) are marked as processed so that Airflow clears
    the import error of a file that has since been fixed.
    """
    bundle_path = getattr(dagbag, "bundle_path", None)  # Airflow 3: keys are relative to the bundle
    for path in parsed_files:
        # Airflow 3 turns these into bundle-relative paths and fails for a file outside the bundle.
        if bundle_path is None or _literally_under(path, bundle_path):
            try:
                dagbag.file_last_changed[path] = datetime.fromtimestamp(os.path.getmtime(path))
            except OSError:
                pass
    for path, errors in rejected.items():
        key = path if bundle_path is None else (_relative_to(path, bundle_path) or path)
        dagbag.import_errors[key] = format_errors(errors)


def _relative_to(path: str, root: Any) -> str | None:
    # Literally first: that is how Airflow 3 itself relativises `file_last_changed` keys.
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        pass
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return None


def _literally_under(path: str, root: Any) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False

"""The wheel a user installs carries the schema (the single source of truth, copied from
`schemas/`), the console script, the Airflow provider entry point and `py.typed`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_schema_entry_points_and_types(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("ovh_ai_dagfactory-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped_schema = archive.read("ovh_ai_dagfactory/schemas/pipeline.schema.json")
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert shipped_schema == (REPO / "schemas" / "pipeline.schema.json").read_bytes()
    assert "ovh_ai_dagfactory/py.typed" in names
    assert "ovh-ai-dagfactory = ovh_ai_dagfactory.cli.main:main" in entry_points
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = ovh_ai_dagfactory.provider_info:get_provider_info" in entry_points
    # Only our package at the top level: no stray `tests`, `hooks` or `pipelines` in site-packages.
    top_level = {name.split("/")[0] for name in names}
    assert {entry for entry in top_level if not entry.endswith(".dist-info")} == {"ovh_ai_dagfactory"}

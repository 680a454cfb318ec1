"""Write what the field declarations produce: the JSON Schema file and the docs reference tables.

    python -m ovh_ai_dagfactory.spec.generate          # rewrite the schema file, the tables and the fast check
    python -m ovh_ai_dagfactory.spec.generate --check  # exit 1 when a checked-in file is out of date

Tests run the check, so a declaration changed without regenerating fails CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ovh_ai_dagfactory.spec.docs_tables import render_reference
from ovh_ai_dagfactory.spec.schema import fast_check_source, schema_text

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "pipeline.schema.json"
REFERENCE_FILE = REPO / "docs" / "pipeline-reference.md"
FAST_CHECK_FILE = Path(__file__).resolve().parent / "generated_fast_check.py"


def outputs() -> dict[Path, str]:
    """Each generated file and the text it must hold."""
    return {
        SCHEMA_FILE: schema_text(),
        REFERENCE_FILE: render_reference(REFERENCE_FILE.read_text(encoding="utf-8")),
        FAST_CHECK_FILE: fast_check_source(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    stale = [path for path, text in outputs().items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(REPO)} is out of date: run python -m ovh_ai_dagfactory.spec.generate",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path, text in outputs().items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

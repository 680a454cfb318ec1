"""`ovh-ai-dagfactory schema`: print the pipeline JSON Schema (for editors, CI, check-jsonschema)."""

from __future__ import annotations

import argparse
import sys

from ovh_ai_dagfactory.spec.schema import schema_text


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "schema",
        help="print the pipeline JSON Schema",
        description="Print the JSON Schema (Draft 2020-12) that pipeline files follow.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0

"""`ovh-ai-dagfactory validate PATH...`: check pipeline files without Airflow or openai.

Exit 0 when every file is valid, 1 when some are not, 2 for usage errors (a missing path,
no pipeline files found), 3 when a file met an internal error of ovh-ai-dagfactory (a bug of ours,
reported like any error so the other files are still checked, but told apart so CI can tell a
crash of the tool from an invalid pipeline). Imports only the spec layer.
"""

from __future__ import annotations

import argparse
import sys

from ovh_ai_dagfactory.cli.reporters import REPORTERS
from ovh_ai_dagfactory.spec.parse import PathNotFound, validate_paths

EXIT_VALID, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "validate",
        help="check pipeline files (schema, step graph, templates) and report every problem",
        description="Check pipeline YAML files; folders are searched recursively for *.yaml and *.yml.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="pipeline files or folders")
    parser.add_argument(
        "--format",
        choices=sorted(REPORTERS),
        default="text",
        help="text (one line per problem, default) or json (for tools)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = validate_paths(args.paths)
    except PathNotFound as missing:
        print(f"ovh-ai-dagfactory validate: error: no such file or folder: {missing}", file=sys.stderr)
        return EXIT_USAGE
    if report.files_checked == 0:
        print(
            "ovh-ai-dagfactory validate: error: no *.yaml or *.yml files found in " + ", ".join(args.paths),
            file=sys.stderr,
        )
        return EXIT_USAGE
    REPORTERS[args.format](sys.stdout).report(report)
    if any(error.internal for error in report.errors):
        return EXIT_INTERNAL
    return EXIT_VALID if report.ok else EXIT_INVALID

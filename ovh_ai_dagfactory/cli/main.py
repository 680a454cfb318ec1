"""`ovh-ai-dagfactory`: parse arguments and dispatch; each command lives in its own module.

Commands import what they need lazily, so `validate` and `schema` never import Airflow or openai.
Exit codes: 0 success, 1 invalid pipelines or a failed run, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovh-ai-dagfactory",
        description="Validate, render and run YAML pipelines of OVHcloud AI Endpoints steps.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Each module imports only the spec at the top; Airflow is imported inside `run`'s handler.
    from ovh_ai_dagfactory.cli import render_command, run_command, schema_command, validate_command

    for command in (validate_command, schema_command, render_command, run_command):
        command.register(commands)
    return parser


def version_text() -> str:
    """Our version, and those of what a bug report needs, read from installed metadata: printing them
    must not import Airflow (seconds) or openai."""
    from importlib.metadata import PackageNotFoundError, version

    from ovh_ai_dagfactory import __version__

    parts = []
    for distribution in ("apache-airflow", "openai"):
        try:
            parts.append(f"{distribution} {version(distribution)}")
        except PackageNotFoundError:
            parts.append(f"{distribution} not installed")
    parts.append(f"Python {sys.version.split()[0]}")
    return f"ovh-ai-dagfactory {__version__} ({', '.join(parts)})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits with 2 on usage errors
    return int(args.handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

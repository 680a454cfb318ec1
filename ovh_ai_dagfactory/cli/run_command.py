"""`ovh-ai-dagfactory run FILE... [--logical-date D]`: run pipelines locally, through Airflow itself.

Airflow runs on a private SQLite metadata DB in `./.ovh-ai-dagfactory/airflow-home` (or --home),
created on first use; nothing touches another Airflow installation. The endpoint and token come
from the usual Airflow connection — `AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT` (or the pipeline's own
connection id) in the environment, or a connection added to that local home. Each step's result
is printed: the answer and token usage for chat, vector count and size for embeddings. Several
files run one after another in one process, so Airflow starts once (every file is checked first).

Exit 0 when every step succeeded, 1 for a bad pipeline, a missing connection or a failed step,
3 for an internal error of ovh-ai-dagfactory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ovh_ai_dagfactory.cli.render_command import EXIT_INTERNAL, InternalErrorReported, parse_or_report
from ovh_ai_dagfactory.factory.mapping import effective_connection_id
from ovh_ai_dagfactory.spec.model import Pipeline

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_HOME = Path(".ovh-ai-dagfactory") / "airflow-home"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "run",
        help="run pipelines locally through Airflow and print each step's result",
        description="Run pipelines through Airflow on a local SQLite metadata DB, one after another.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="pipeline files (.yaml/.yml)")
    parser.add_argument(
        "--logical-date",
        metavar="D",
        type=_logical_date,
        default=None,
        help="the run's logical date (2024-01-31 or an ISO date-time; default: now, UTC)",
    )
    parser.add_argument(
        "--home",
        metavar="DIR",
        type=Path,
        default=DEFAULT_HOME,
        help=f"the local Airflow home (default: {DEFAULT_HOME})",
    )
    parser.add_argument("--verbose", action="store_true", help="show Airflow's own log lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Every file is checked before Airflow starts: a typo costs no Airflow start-up.
    parsed: list[tuple[str, Pipeline | None]] = []
    internal = False
    for file in args.files:
        try:
            parsed.append((file, parse_or_report(file)))
        except InternalErrorReported:
            parsed.append((file, None))
            internal = True
    if any(pipeline is None for _, pipeline in parsed):
        return EXIT_INTERNAL if internal else EXIT_FAILED
    pipelines = [(file, pipeline) for file, pipeline in parsed if pipeline is not None]
    _use_local_airflow_home(args.home.absolute(), verbose=args.verbose)
    from ovh_ai_dagfactory.factory import (
        local_run as local_airflow,  # imports Airflow: only after the environment is set
    )

    local_airflow.prepare_metadata_db(args.home.absolute())
    needed = sorted({conn_id for _, pipeline in pipelines for conn_id in _connection_ids(pipeline)})
    missing = [conn_id for conn_id in needed if not local_airflow.connection_exists(conn_id)]
    if missing:
        for conn_id in missing:
            print(_missing_connection_message(conn_id, args.home), file=sys.stderr)
        return EXIT_FAILED
    status = EXIT_OK
    for number, (file, pipeline) in enumerate(pipelines):
        if number:
            print()
        if run_one(local_airflow, file, pipeline, args.logical_date) != EXIT_OK:
            status = EXIT_FAILED
    return status


def run_one(local_airflow: Any, file: str, pipeline: Pipeline, logical_date: datetime | None) -> int:
    logical_date = logical_date or datetime.now(timezone.utc)
    print(f"Running {pipeline.dag_id} ({file}), logical date {logical_date.isoformat()}", flush=True)
    outcomes = local_airflow.run_pipeline(pipeline, logical_date, source_label=file)
    print()
    for outcome in outcomes:
        print(describe(outcome))
    failed = [outcome for outcome in outcomes if outcome.state != "success"]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} steps succeeded", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


#: Items of a for_each step whose result `run` prints; the others are counted.
_ITEMS_SHOWN = 5


def describe(outcome: Any) -> str:
    """One step's result in a few lines: state, then content/vectors and token usage (for a for_each
    step, the first items' results and the usage of all)."""
    if outcome.items is not None:
        head = f"{outcome.step_id} ({outcome.kind}, {len(outcome.items)} items): {outcome.state}"
        lines = [head]
        for index, response in enumerate(outcome.items[:_ITEMS_SHOWN]):
            lines += [f"  [{index}]" + line[1:] for line in _results(outcome.kind, response)]
        if len(outcome.items) > _ITEMS_SHOWN:
            lines.append(f"  ... and {len(outcome.items) - _ITEMS_SHOWN} more items")
        usage: dict[str, Any] = {}
        for response in outcome.items:
            for key, value in ((response or {}).get("usage") or {}).items():
                if isinstance(value, (int, float)):
                    usage[key] = usage.get(key, 0) + value
        return "\n".join(lines + _usage(usage))
    head = f"{outcome.step_id} ({outcome.kind}): {outcome.state}"
    response = outcome.response
    if not isinstance(response, dict):
        return head + (f"\n  error: {outcome.error}" if outcome.error else "")
    return "\n".join([head, *_results(outcome.kind, response), *_usage(response.get("usage") or {})])


def _results(kind: str, response: Any) -> list[str]:
    """The content or the vectors' shape of one response, as indented lines."""
    # The provider's definitions of an answer's result (imported here: they import Airflow, which
    # `run` configures first).
    from ovh_ai_dagfactory.hooks.errors import OVHCloudAIEndpointsError
    from ovh_ai_dagfactory.hooks.results import chat_content, embedding_vectors

    try:
        if kind == "chat":
            return [f"  content: {chat_content(response)}"]
        vectors = embedding_vectors(response)
        return [f"  vectors: {len(vectors)} × {len(vectors[0]) if vectors else 0} dimensions"]
    except OVHCloudAIEndpointsError as error:
        return [f"  no result: {error}"]


def _usage(usage: dict[str, Any]) -> list[str]:
    shown = ", ".join(f"{key}={value}" for key, value in usage.items() if isinstance(value, (int, float)))
    return [f"  tokens: {shown}"] if shown else []


def _connection_ids(pipeline: Pipeline) -> list[str]:
    return sorted({effective_connection_id(step, pipeline) for step in pipeline.steps})


def _missing_connection_message(conn_id: str, home: Path) -> str:
    env = f"AIRFLOW_CONN_{conn_id.upper().replace('.', '_').replace('-', '_')}"
    example = json.dumps({"conn_type": "ovhcloud_ai_endpoints", "password": "<your AI Endpoints token>"})
    return (
        f"error: Airflow connection '{conn_id}' not found.\n"
        f"  Set it in the environment:  export {env}='{example}'\n"
        f'  (add "host": "http://127.0.0.1:PORT/v1" to use another OpenAI-compatible endpoint),\n'
        f"  or add it to the local Airflow home:  AIRFLOW_HOME={home} airflow connections add {conn_id} "
        f"--conn-type ovhcloud_ai_endpoints --conn-password <token>"
    )


def _use_local_airflow_home(home: Path, *, verbose: bool) -> None:
    """Point Airflow at the private home before it is imported (it reads config on import)."""
    if "airflow" in sys.modules:  # pragma: no cover - only when called from inside Airflow
        raise RuntimeError("run must configure Airflow before Airflow is imported")
    (home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    # One DB file per Airflow version: 2.11 and 3.x schemas differ, and a home may serve both lines.
    from importlib.metadata import version

    database = home / f"airflow-{version('apache-airflow')}.db"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{database}"
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    if not verbose:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"


def _logical_date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use 2024-01-31 or 2024-01-31T06:00:00+00:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

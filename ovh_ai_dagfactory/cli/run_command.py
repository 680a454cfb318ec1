"""`ovh-ai-dagfactory run FILE... [--conf ...]`: run pipelines locally, through Airflow itself.

Which Airflow home it uses:
- `AIRFLOW_HOME` set (and no --home): that home, as `airflow dags test` would — its configuration,
  metadata DB, connections and variables; the run is recorded there. Its DB is never reset.
- `--home DIR`: a private home kept in DIR (a SQLite DB created on first use), fast to run again.
- neither: a throw-away home in the system's temporary folder, removed when the command ends; nothing
  is left in the working directory.
The endpoint and token come from the usual Airflow connection — `AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT`
(or the pipeline's own connection id) in the environment, or a connection of that home. Each step's
result is printed: the answer and token usage for chat, vector count and size for embeddings; Airflow's
own log lines (and the traceback of a failed task) only with --verbose. Several files run one after
another in one process, so Airflow starts once (every file is checked first).

Exit 0 when every step succeeded, 1 for a bad pipeline, a missing connection or a failed step,
3 for an internal error of ovh-ai-dagfactory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ovh_ai_dagfactory.cli.render_command import EXIT_INTERNAL, InternalErrorReported, parse_or_report
from ovh_ai_dagfactory.factory.mapping import effective_connection_id
from ovh_ai_dagfactory.spec.model import Pipeline

EXIT_OK, EXIT_FAILED = 0, 1


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
        default=None,
        help="a private Airflow home kept in DIR (default: AIRFLOW_HOME when set, else a throw-away one)",
    )
    parser.add_argument(
        "--conf",
        metavar="CONF",
        action="append",
        default=[],
        help="the run's params: key=value (value read as JSON when it is JSON, else text), a JSON object, "
        "or @file.json; repeat to combine",
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
    try:
        conf = run_conf(args.conf)
    except ValueError as error:
        print(f"error: --conf: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return _run_in_airflow(args, pipelines, conf)
    except Exception as exc:  # noqa: BLE001 - Airflow failing to run at all: said plainly, not a traceback
        if args.verbose:
            traceback.print_exc()
        reason = (str(exc).splitlines() or [""])[0][:300]
        print(f"error: Airflow could not run the pipelines: {type(exc).__name__}: {reason}", file=sys.stderr)
        if os.environ.get("AIRFLOW_HOME") and args.home is None:
            print("  the home in AIRFLOW_HOME must have a migrated metadata DB: airflow db migrate", file=sys.stderr)
        print("  --verbose shows Airflow's log and the traceback", file=sys.stderr)
        return EXIT_INTERNAL


def _run_in_airflow(args: argparse.Namespace, pipelines: list[tuple[str, Pipeline]], conf: dict[str, Any]) -> int:
    with airflow_home(args.home, verbose=args.verbose) as (home, private):
        from ovh_ai_dagfactory.factory import (
            local_run as local_airflow,  # imports Airflow: only after the environment is set
        )

        if private:
            local_airflow.prepare_metadata_db(home)
        else:
            local_airflow.prepare_existing_home()
        needed = sorted({conn_id for _, pipeline in pipelines for conn_id in _connection_ids(pipeline)})
        missing = [conn_id for conn_id in needed if not local_airflow.connection_exists(conn_id)]
        if missing:
            for conn_id in missing:
                print(_missing_connection_message(conn_id, home, private), file=sys.stderr)
            return EXIT_FAILED
        status = EXIT_OK
        for number, (file, pipeline) in enumerate(pipelines):
            if number:
                print()
            if run_one(local_airflow, file, pipeline, args.logical_date, conf) != EXIT_OK:
                status = EXIT_FAILED
        return status


def run_conf(values: list[str]) -> dict[str, Any]:
    """The run's conf from --conf values: `key=value`, a JSON object, or `@file.json`."""
    conf: dict[str, Any] = {}
    for value in values:
        if value.startswith("@"):
            try:
                text = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"cannot read {value[1:]}: {error.strerror}") from None
            conf.update(_json_object(text, value))
        elif value.lstrip().startswith("{"):
            conf.update(_json_object(value, value))
        elif "=" in value:
            key, _, text = value.partition("=")
            try:
                conf[key.strip()] = json.loads(text)
            except ValueError:
                conf[key.strip()] = text
        else:
            raise ValueError(f"{value!r} is not key=value, a JSON object or @file.json")
    return conf


def _json_object(text: str, origin: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{origin} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{origin} must be a JSON object, not {type(value).__name__}")
    return value


@contextmanager
def airflow_home(home: Path | None, *, verbose: bool) -> Iterator[tuple[Path, bool]]:
    """(the Airflow home to run in, whether it is private to `run`), configured before Airflow is
    imported (it reads its configuration on import); a throw-away home is removed afterwards."""
    if "airflow" in sys.modules:  # pragma: no cover - only when called from inside Airflow
        raise RuntimeError("run must configure Airflow before Airflow is imported")
    if not verbose:
        # Airflow's own lines (a failed task's traceback among them) would come before our summary,
        # which says why each step failed; --verbose shows them. 3.x honours the logging level;
        # 2.11's dag.test() and DB migration log through loggers of their own, and its import warns.
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "CRITICAL"
        warnings.simplefilter("ignore")
        for name in ("airflow", "alembic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if home is None and os.environ.get("AIRFLOW_HOME"):
        print(f"Using the Airflow home in AIRFLOW_HOME ({os.environ['AIRFLOW_HOME']})", flush=True)
        yield Path(os.environ["AIRFLOW_HOME"]), False
        return
    if home is not None:
        _use_private_home(home.absolute())
        yield home.absolute(), True
        return
    scratch = Path(tempfile.mkdtemp(prefix="ovh-ai-dagfactory-run-"))
    try:
        _use_private_home(scratch)
        yield scratch, True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_one(
    local_airflow: Any, file: str, pipeline: Pipeline, logical_date: datetime | None, conf: dict[str, Any] | None = None
) -> int:
    logical_date = logical_date or datetime.now(timezone.utc)
    print(f"Running {pipeline.dag_id} ({file}), logical date {logical_date.isoformat()}", flush=True)
    outcomes = local_airflow.run_pipeline(pipeline, logical_date, source_label=file, conf=conf or None)
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
    from ovh_ai_dagfactory.calls.errors import OVHCloudAIEndpointsError
    from ovh_ai_dagfactory.calls.results import chat_content, embedding_vectors

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


def _missing_connection_message(conn_id: str, home: Path, private: bool) -> str:
    env = f"AIRFLOW_CONN_{conn_id.upper().replace('.', '_').replace('-', '_')}"
    example = json.dumps({"conn_type": "ovhcloud_ai_endpoints", "password": "<your AI Endpoints token>"})
    where = "a private home (--home DIR)" if private else f"the Airflow home ({home})"
    return (
        f"error: Airflow connection '{conn_id}' not found.\n"
        f"  Set it in the environment:  export {env}='{example}'\n"
        f'  (add "host": "http://127.0.0.1:PORT/v1" to use another OpenAI-compatible endpoint),\n'
        f"  or add it to {where}:  AIRFLOW_HOME=<home> airflow connections add {conn_id} "
        f"--conn-type ovhcloud_ai_endpoints --conn-password <token>"
    )


def _use_private_home(home: Path) -> None:
    """Point Airflow at a home of `run`'s own: its folder, a SQLite DB, no examples."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    # One DB file per Airflow version: 2.11 and 3.x schemas differ, and a home may serve both lines.
    from importlib.metadata import version

    database = home / f"airflow-{version('apache-airflow')}.db"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{database}"
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


def _logical_date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use 2024-01-31 or 2024-01-31T06:00:00+00:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

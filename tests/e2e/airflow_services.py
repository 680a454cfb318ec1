"""A real Airflow for end-to-end tests: separate service processes on loopback, driven over REST.

    with AirflowServices(dags_folder, extra_env={...}) as airflow:
        airflow.wait_for_dags({"my_dag"}, import_error_files={"broken.py"})
        run = airflow.api.trigger("my_dag")
        state = airflow.wait_for_run("my_dag", run["dag_run_id"])
        value = airflow.api.xcom("my_dag", run["dag_run_id"], "my_task")

What it does, in order:

1. makes a fresh AIRFLOW_HOME (a temp dir) with an SQLite metadata DB and runs ``airflow db migrate``;
2. starts each service as its own subprocess, in its own session (process group), on free ports of
   127.0.0.1, with its PID written to ``$AIRFLOW_HOME/pids/<service>.pid`` and its stdout/stderr
   captured to ``$AIRFLOW_HOME/service-logs/<service>.log``:
     - Airflow 3.x: ``airflow api-server``, ``airflow scheduler`` (LocalExecutor) and
       ``airflow dag-processor`` — never ``airflow standalone`` (it hangs on shutdown);
     - Airflow 2.x: ``airflow webserver`` and ``airflow scheduler`` (SequentialExecutor, or the
       LocalExecutor with ``local_executor_on_2x=True``; DAG processor in-process), with a
       basic-auth admin user made by ``airflow users create``;
3. waits until the API answers and reports its components healthy;
4. stops everything by PID: SIGTERM to each service's process group, SIGKILL after a grace period,
   then SIGKILL to any process still carrying this harness's marker in its environment (a task
   process that left the group). ``stop()`` is idempotent and runs from ``__exit__``, so a failing
   test still cleans up.

The services get their own environment: every ``AIRFLOW*`` variable of the calling process (the
test session's AIRFLOW_HOME, unit-test mode, …) is dropped, then the harness's settings and
``extra_env`` (e.g. an ``AIRFLOW_CONN_*`` connection) are applied.

Only the standard library plus psutil (an Airflow dependency on both lines) is used.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["AirflowApi", "AirflowServices", "Deadline", "ServiceError", "airflow_major_version"]

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"  # 2.x basic auth only; a throwaway local DB on loopback
MARKER_VAR = "OVH_AI_DAGFACTORY_E2E_HARNESS"


class ServiceError(RuntimeError):
    """A service did not start, died, or an API call failed; the message carries the log tails."""


def airflow_major_version(python: str | None = None) -> int:
    """The Airflow major version installed for `python` (default: this interpreter), without
    importing Airflow into the calling process."""
    out = subprocess.run(
        [python or sys.executable, "-c", "from importlib.metadata import version; print(version('apache-airflow'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return int(out.split(".")[0])


EXAMPLES = Path(__file__).resolve().parents[2] / "pipelines"

#: Broken on purpose, for the suites' "one broken pipeline hides no other" checks: a typo'd key,
#: which the loader reports as BROKEN_ERROR (line 8, column 5) under the file's import error.
BROKEN_DAG_ID = "e2e_broken_pipeline"
BROKEN_PIPELINE = f"""\
# A pipeline with a typo: `mesages` instead of `messages`.
dag_id: {BROKEN_DAG_ID}
start_date: 2024-01-01
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    mesages:
      - {{role: user, content: hello}}
"""
BROKEN_ERROR = "broken_pipeline.yaml:8:5: error: unknown key 'mesages' in step 'ask'"


def example_dag_ids() -> dict[str, str]:
    """dag_id → file name of each example pipeline, read from its top-level `dag_id:` line (no YAML
    parser: the tests must not depend on the loader's parser, nor disagree with it — PyYAML's
    pure-Python parser rejects `{content: How do I read a CSV file?}`, which libyaml accepts)."""
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        match = re.search(r"^dag_id:\s*[\"']?([\w.-]+)", path.read_text(), re.MULTILINE)
        assert match, f"no top-level dag_id in {path}"
        out[match.group(1)] = path.name
    return out


def copy_examples(pipelines: Path) -> None:
    """The example pipelines, and the data they read (embed_corpus's texts), into `pipelines`."""
    pipelines.mkdir(parents=True, exist_ok=True)
    for path in EXAMPLES.glob("*.yaml"):
        shutil.copy(path, pipelines / path.name)
    shutil.copytree(EXAMPLES / "data", pipelines / "data")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deadline:
    """One overall time budget shared by every wait of a test."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.end = self.started + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def expired(self) -> bool:
        return time.monotonic() >= self.end


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    pid_path: Path
    process: subprocess.Popen | None = None
    log_file: Any = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class AirflowApi:
    """A small JSON client for Airflow's public REST API (v2 on Airflow 3.x, v1 on 2.x)."""

    def __init__(self, base_url: str, major: int, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.major = major
        self.timeout = timeout
        self.prefix = "/api/v2" if major >= 3 else "/api/v1"
        self._token: str | None = None

    # -- transport ------------------------------------------------------------------------

    def _auth_header(self) -> dict[str, str]:
        if self.major < 3:
            raw = f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self._token is None:
            # SimpleAuthManager with `simple_auth_manager_all_admins`: a token without credentials.
            body = self._raw("GET", "/auth/token", headers={})
            self._token = body["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def _raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise ApiError(exc.code, f"{method} {path} -> HTTP {exc.code}: {detail}") from None
        return json.loads(payload) if payload else None

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        """`path` is relative to the API prefix (``/dags`` → ``/api/v2/dags``)."""
        return self._raw(method, self.prefix + path, body, headers=self._auth_header(), query=query)

    # -- endpoints ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        path = "/api/v2/monitor/health" if self.major >= 3 else "/health"
        return self._raw("GET", path)

    def dags(self) -> dict[str, dict[str, Any]]:
        """Every DAG the API lists, by dag_id (paged)."""
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.request("GET", "/dags", query={"limit": 100, "offset": offset})
            for dag in page["dags"]:
                out[dag["dag_id"]] = dag
            offset += len(page["dags"])
            if not page["dags"] or offset >= page["total_entries"]:
                return out

    def import_errors(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.request("GET", "/importErrors", query={"limit": 100, "offset": offset})
            out.extend(page["import_errors"])
            offset += len(page["import_errors"])
            if not page["import_errors"] or offset >= page["total_entries"]:
                return out

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{urllib.parse.quote(dag_id)}/details")

    def trigger(
        self, dag_id: str, conf: dict | None = None, logical_date: datetime | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        logical_date = logical_date or datetime.now(timezone.utc)
        body: dict[str, Any] = {"logical_date": logical_date.isoformat(), "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included (one per map_index; paged: a page
        is 50 entries on 3.x, 100 on 2.11)."""
        path = f"/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
        out: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", path, query={"limit": 100, "offset": len(out)})
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int | None = None
    ) -> Any:
        """The XCom value, as JSON (decoded when the API returns it as a JSON string). A mapped
        task's XComs are per item: pass its `map_index`."""
        path = (
            f"/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}"
            f"/taskInstances/{urllib.parse.quote(task_id)}/xcomEntries/{urllib.parse.quote(key)}"
        )
        query: dict[str, Any] = {"deserialize": "true", "stringify": "false"} if self.major < 3 else {}
        if map_index is not None:
            query["map_index"] = map_index
        value = self.request("GET", path, query=query or None)["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


class ApiError(ServiceError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class MemorySampler:
    """Samples the summed RSS of the harness's processes in a background thread."""

    pids_fn: Any
    interval: float = 0.5
    peak_bytes: int = 0
    peak_pss_bytes: int = 0
    peak_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="e2e-memory-sampler", daemon=True)
        self._thread.start()

    def sample(self) -> int:
        import psutil

        rss = pss = 0
        pids = self.pids_fn()
        for pid in pids:
            try:
                info = psutil.Process(pid).memory_full_info()
            except (psutil.Error, OSError):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)  # PSS splits shared pages (forked workers)
        if rss > self.peak_bytes:
            self.peak_bytes, self.peak_processes = rss, len(pids)
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
        return rss

    def summary(self) -> str:
        return (
            f"peak RSS {self.peak_bytes / 2**20:.0f} MiB (PSS {self.peak_pss_bytes / 2**20:.0f} MiB) "
            f"over {self.peak_processes} processes"
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class AirflowServices:
    """Airflow's services as subprocesses on 127.0.0.1, with their own AIRFLOW_HOME.

    `dags_folder` is used as is (not copied). `extra_env` is added to every service's
    environment. `python` is the interpreter whose Airflow is started (default: this one).
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        *,
        extra_env: Mapping[str, str] | None = None,
        home: str | os.PathLike[str] | None = None,
        python: str | None = None,
        startup_timeout: float = 120.0,
        deadline: Deadline | None = None,
        stop_timeout: float = 15.0,
        keep_home: bool = False,
        folder_scan_interval: int = 300,
        file_parse_interval: int = 30,
        local_executor_on_2x: bool = False,
        with_triggerer: bool = False,
    ) -> None:
        self.dags_folder = Path(dags_folder).resolve()
        self.extra_env = dict(extra_env or {})
        self.python = python or sys.executable
        self.major = airflow_major_version(self.python)
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="ovh-ai-e2e-airflow-"))
        self.startup_timeout = startup_timeout
        # The test's overall budget, if given: start-up (migrate included) never outlives it.
        self.deadline = deadline
        self.stop_timeout = stop_timeout
        self.keep_home = keep_home
        # Airflow's defaults. The first folder scan and parse happen at start-up whatever these
        # are; a short scan interval does not speed a test up, and it makes Airflow delete the
        # import errors of non-.py files (broken YAML pipelines) more often.
        self.folder_scan_interval = folder_scan_interval
        self.file_parse_interval = file_parse_interval
        # Airflow 2.x refuses the LocalExecutor on SQLite (task processes write the metadata DB
        # directly, and SQLite locks the whole file); its own test escape hatch lifts the check.
        # Off by default; on for tests that run many tasks: each task is forked from the
        # executor's worker instead of a fresh `airflow tasks run` interpreter, and up to
        # `core.parallelism` run at once (measured: a 50-item fan-out in ~80 s instead of ~250 s).
        self.local_executor_on_2x = local_executor_on_2x
        # `airflow triggerer` too, for deferrable tasks (off by default: one process fewer).
        self.with_triggerer = with_triggerer
        self.marker = secrets.token_hex(8)
        # One set of secrets for every process: JWTs signed by the scheduler for its task
        # processes are checked by the api-server, so they must share the key.
        self._secrets = {k: secrets.token_hex(32) for k in ("jwt", "api", "webserver")}
        self.api_port = free_port()
        self.log_server_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.api = AirflowApi(self.base_url, self.major)
        self.services: list[Service] = []
        self.timings: dict[str, float] = {}
        self.memory = MemorySampler(self._our_pids)
        self._stopped = False

    # -- environment ----------------------------------------------------------------------

    @property
    def service_log_dir(self) -> Path:
        return self.home / "service-logs"

    @property
    def pid_dir(self) -> Path:
        return self.home / "pids"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        bin_dir = str(Path(self.python).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env[MARKER_VAR] = self.marker
        env["PYTHONUNBUFFERED"] = "1"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__WEBSERVER__SECRET_KEY": self._secrets["webserver"],
            }
        )
        if self.major >= 3:
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                    "AIRFLOW__API__BASE_URL": self.base_url,
                    "AIRFLOW__API__HOST": "127.0.0.1",
                    "AIRFLOW__API__PORT": str(self.api_port),
                    "AIRFLOW__API__WORKERS": "1",
                    "AIRFLOW__API__SECRET_KEY": self._secrets["api"],
                    "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt"],
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(self.folder_scan_interval),
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(self.file_parse_interval),
                    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                }
            )
        else:
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if self.local_executor_on_2x else "SequentialExecutor",
                    "AIRFLOW__API__AUTH_BACKENDS": "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth",
                    "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                    "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.api_port),
                    "AIRFLOW__WEBSERVER__WORKERS": "1",
                    "AIRFLOW__WEBSERVER__BASE_URL": self.base_url,
                    "AIRFLOW__WEBSERVER__WEB_SERVER_WORKER_TIMEOUT": "120",
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": str(self.folder_scan_interval),
                    "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": str(self.file_parse_interval),
                    "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                    "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "False",
                }
            )
        if self.major < 3 and self.local_executor_on_2x:
            env["_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK"] = "1"
        env.update(self.extra_env)
        return env

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> AirflowServices:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> AirflowServices:
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self.service_log_dir.mkdir(exist_ok=True)
        self.pid_dir.mkdir(exist_ok=True)
        self._airflow_cli("db-migrate", ["db", "migrate"], timeout=self._budget(180))
        if self.major < 3:
            self._airflow_cli(
                "users-create",
                [
                    "users",
                    "create",
                    "--username",
                    ADMIN_USER,
                    "--password",
                    ADMIN_PASSWORD,
                    "--role",
                    "Admin",
                    "--email",
                    "admin@example.invalid",
                    "--firstname",
                    "E2E",
                    "--lastname",
                    "Admin",
                ],
                timeout=self._budget(120),
            )
        self.timings["db_migrate_s"] = time.monotonic() - t0
        self.memory.start()
        # A safety net for an interpreter that exits without running the fixture's teardown
        # (e.g. KeyboardInterrupt during set-up); `stop()` is idempotent and unregisters it.
        atexit.register(self.stop)
        if self.major >= 3:
            self._spawn(
                "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
            )
            self._spawn("scheduler", ["scheduler"])
            self._spawn("dag-processor", ["dag-processor"])
        else:
            self._spawn(
                "webserver", ["webserver", "--hostname", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
            )
            self._spawn("scheduler", ["scheduler"])
        if self.with_triggerer:
            self._spawn("triggerer", ["triggerer"])
        self.wait_healthy(Deadline(self._budget(self.startup_timeout)))
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def _budget(self, seconds: float) -> float:
        if self.deadline is None:
            return seconds
        if self.deadline.expired():
            raise ServiceError(f"test budget of {self.deadline.seconds:.0f}s spent before Airflow started")
        return min(seconds, self.deadline.remaining())

    def _airflow_cli(self, name: str, args: list[str], timeout: float) -> None:
        log_path = self.service_log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.run(
                    [self.python, "-m", "airflow", *args],
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.home,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ServiceError(
                    f"`airflow {' '.join(args)}` took more than {timeout:.0f}s\n" + self._tail(log_path)
                ) from None
        if proc.returncode != 0:
            raise ServiceError(f"`airflow {' '.join(args)}` exited {proc.returncode}\n{self._tail(log_path)}")

    def _spawn(self, name: str, args: list[str]) -> Service:
        svc = Service(
            name,
            [self.python, "-m", "airflow", *args],
            self.service_log_dir / f"{name}.log",
            self.pid_dir / f"{name}.pid",
        )
        svc.log_file = open(svc.log_path, "ab")
        svc.process = subprocess.Popen(
            svc.argv,
            env=self.env(),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=svc.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session = own process group
        )
        svc.pid_path.write_text(f"{svc.process.pid}\n")
        self.services.append(svc)
        return svc

    def wait_healthy(self, deadline: Deadline) -> dict[str, Any]:
        wanted = ("metadatabase", "scheduler", "dag_processor") if self.major >= 3 else ("metadatabase", "scheduler")
        wanted += ("triggerer",) if self.with_triggerer else ()
        last: Any = None
        while True:
            self.check_alive()
            try:
                last = self.api.health()
                if all((last.get(k) or {}).get("status") == "healthy" for k in wanted):
                    # On 3.x also make sure auth works (token endpoint) before declaring ready.
                    self.api.request("GET", "/dags", query={"limit": 1})
                    return last
            except (OSError, ServiceError, ValueError) as exc:
                last = repr(exc)
            if deadline.expired():
                raise ServiceError(
                    f"Airflow not healthy after {deadline.seconds:.0f}s; last health: {last}\n" + self.logs()
                )
            time.sleep(0.5)

    def check_alive(self) -> None:
        for svc in self.services:
            if not svc.alive():
                code = svc.process.returncode if svc.process else None
                raise ServiceError(f"service {svc.name} (pid {svc.pid}) exited with {code}\n" + self.logs())

    def stop(self) -> None:
        """Stop every service by PID: SIGTERM its process group, SIGKILL after `stop_timeout`."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        t0 = time.monotonic()
        for svc in reversed(self.services):
            if svc.process is None:
                continue
            pgid = svc.process.pid  # start_new_session: the leader's pid is the group id
            _signal_group(pgid, signal.SIGTERM)
        end = time.monotonic() + self.stop_timeout
        for svc in reversed(self.services):
            if svc.process is None:
                continue
            try:
                svc.process.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left in the group (the leader if it ignored SIGTERM, or its children).
            _signal_group(svc.process.pid, signal.SIGKILL)
            try:
                svc.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if svc.log_file:
                svc.log_file.close()
        # Stragglers that left the groups (e.g. task processes in their own session), until none is
        # left: a killed process takes a moment to die (a large one, on a busy machine), and one
        # may start another while it goes. stop() returns when they are gone, not when told to go.
        gone_by = time.monotonic() + 10
        while (left := self._our_pids()) and time.monotonic() < gone_by:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        self.timings["stop_s"] = time.monotonic() - t0
        self.memory.stop()
        if self._own_home and not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _our_pids(self) -> list[int]:
        """Live processes started by this harness: in a service's session, or with our marker
        (zombies, dead already and waiting to be reaped, are not live)."""
        import psutil

        sessions = {svc.process.pid for svc in self.services if svc.process is not None}
        me = os.getpid()
        out = []
        for proc in psutil.process_iter(["pid"]):
            pid = proc.info["pid"]
            if pid == me:
                continue
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if os.getsid(pid) in sessions:
                    out.append(pid)
                    continue
                if proc.environ().get(MARKER_VAR) == self.marker:
                    out.append(pid)
            except (psutil.Error, OSError):
                continue
        return out

    # -- waiting on DAGs and runs ---------------------------------------------------------

    def wait_for_dags(
        self, dag_ids: Iterable[str], deadline: Deadline, import_error_files: Iterable[str] = ()
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Poll until every `dag_ids` is listed and an import error exists for each file name in
        `import_error_files` (matched on the file's base name). Returns (dags, import_errors)."""
        want_dags = set(dag_ids)
        want_errors = set(import_error_files)
        dags: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        while True:
            self.check_alive()
            dags = self.api.dags()
            errors = self.api.import_errors()
            seen_errors = {Path(e["filename"]).name for e in errors}
            if want_dags <= set(dags) and want_errors <= seen_errors:
                return dags, errors
            if deadline.expired():
                raise ServiceError(
                    f"after {deadline.elapsed():.0f}s: missing DAGs {sorted(want_dags - set(dags))} "
                    f"(listed: {sorted(dags)}); missing import errors {sorted(want_errors - seen_errors)} "
                    f"(seen: {sorted(seen_errors)})\n" + self.logs()
                )
            time.sleep(1)

    def wait_for_run(self, dag_id: str, run_id: str, deadline: Deadline) -> dict[str, Any]:
        """Poll a DAG run until it is finished (success or failed); returns the run."""
        while True:
            self.check_alive()
            run = self.api.dag_run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            if deadline.expired():
                tis = self.api.task_instances(dag_id, run_id)
                raise ServiceError(
                    f"run {dag_id}/{run_id} still {run['state']} after {deadline.elapsed():.0f}s; "
                    f"tasks: {[(t['task_id'], t['state']) for t in tis]}\n" + self.logs()
                )
            time.sleep(1)

    # -- diagnostics ----------------------------------------------------------------------

    @staticmethod
    def _tail(path: Path, lines: int = 60) -> str:
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(cannot read {path}: {exc})"
        return "\n".join(text[-lines:])

    def logs(self, lines: int = 60) -> str:
        """The tails of every service log and every task log, for assertion messages."""
        parts = []
        for path in sorted(self.service_log_dir.glob("*.log")):
            parts.append(f"----- {path.name} (last {lines} lines) -----\n{self._tail(path, lines)}")
        task_logs = sorted((self.home / "logs").glob("dag_id=*/**/*.log"))
        for path in task_logs[-10:]:
            rel = path.relative_to(self.home / "logs")
            parts.append(f"----- task log {rel} (last {lines} lines) -----\n{self._tail(path, lines)}")
        return "\n".join(parts)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass

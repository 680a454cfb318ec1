"""A distributed Airflow 3 for end-to-end tests: PostgreSQL, Redis, and the CeleryExecutor with
Celery workers that each behave as a separate host, all on loopback, started and stopped here.

    with DistributedAirflow(root, dags_source, workers=("worker-a", "worker-b")) as dist:
        dist.sync_dags()                       # "git-sync": copy the DAG folder to every host
        dist.airflow.wait_for_dags({...}, deadline)
        run = dist.airflow.api.trigger("my_dag")
        ...

What it starts, in order (each stopped in reverse by ``stop()``, which ``__exit__`` always runs):

1. **PostgreSQL** (the Debian package's server binaries, ``/usr/lib/postgresql/<v>/bin``): a fresh
   cluster made by ``initdb`` in a temp folder, ``postgres`` on a free port of 127.0.0.1 with trust
   auth (loopback only) and durability off (``fsync=off``: a throwaway DB). Postgres refuses to run
   as root, so as root it runs as the ``postgres`` system user (the package creates it; ``.ci/services``
   installs the package), with ``Popen(user=...)`` — no ``su``/``runuser`` in between, so its PID is
   the postmaster's and a SIGINT is a fast shutdown.
2. **Redis** (``redis-server`` from the Debian package) on a free port of 127.0.0.1, no persistence.
3. The **control plane**, an ``AirflowServices`` (``airflow_services.py``) whose environment is
   switched to Postgres and the ``CeleryExecutor`` (broker Redis, result backend Postgres):
   ``airflow db migrate``, then api-server, scheduler, dag-processor, waited on until healthy. Its
   AIRFLOW_HOME and DAG folder are the "scheduler host".
4. One ``airflow celery worker`` per name in ``workers``, each a separate "host": its **own
   AIRFLOW_HOME** (so its own validation cache, ``$AIRFLOW_HOME/.cache/ovh-ai-dagfactory``, the
   loader's default), its **own copy of the DAG folder** (what git-sync gives each host), its own
   log-server port, its own Celery node name (``--celery-hostname <name>@e2e``) and its own Airflow
   hostname (``core.hostname_callable`` points at a one-line module in the worker's home that
   returns the name): the task instances' ``hostname`` field then tells which worker ran them.
   Workers run with ``--concurrency`` 2 and Airflow's Celery defaults (prefetch multiplier 1, late
   acks), so a worker holds at most 2 tasks and a burst of queued tasks spreads over both.

All of it shares the harness's marker variable (``OVH_AI_DAGFACTORY_E2E_HARNESS``) and process
groups, so ``AirflowServices.stop()`` also ends the workers and their task processes. Postgres and
Redis are stopped by PID. Every wait is bounded and fails with the log tails of every service
(Postgres and Redis included) and of the task logs of every host.
"""

from __future__ import annotations

import importlib.metadata
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.airflow_services import (
    AirflowServices,
    Deadline,
    Service,
    ServiceError,
    _signal_group,
    free_port,
)

__all__ = [
    "CeleryAirflow",
    "DistributedAirflow",
    "PostgresServer",
    "RedisServer",
    "WorkerHost",
    "missing_prerequisites",
    "postgres_bindir",
]

PG_USER = "airflow"  # the database role Airflow connects as (trust auth on loopback)
PG_DB = "airflow"
HOSTNAME_MODULE = "ovh_e2e_worker_host"  # written into each worker's home, on its PYTHONPATH only


def generated_pipeline(i: int, revision: int = 1) -> str:
    """Pipeline `e2e_gen_<i>`, a small valid one (what the test and benchmarks/bench_distributed.py
    generate by the hundred): one chat step sending `generated_prompt(i, revision)`; every fourth
    one also embeds the answer (two tasks)."""
    text = f"""\
dag_id: e2e_gen_{i:03d}
schedule: null
start_date: 2024-01-01
tags: [e2e-generated]
steps:
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    max_tokens: 20
    messages:
      - {{role: user, content: "{generated_prompt(i, revision)}"}}
"""
    if i % 4 == 0:
        text += '  embed:\n    type: embedding\n    model: BGE-M3\n    input: "{{ steps.ask.content }}"\n'
    return text


def generated_prompt(i: int, revision: int) -> str:
    return f"Pipeline {i:03d}, revision {revision}."


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/<v>/bin, else `initdb`
    on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _postgres_os_user() -> str | None:
    """Who runs the postgres server: the current user, or as root the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "running as root and there is no `postgres` system user to run PostgreSQL as "
            "(install the Debian package `postgresql`: bash .ci/services)"
        ) from None
    return "postgres"


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a distributed deployment (empty when all is there)."""
    missing = []
    if postgres_bindir() is None:
        missing.append("PostgreSQL server binaries (Debian package postgresql; bash .ci/services)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (Debian package redis-server; bash .ci/services)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("the `postgres` system user (Debian package postgresql)")
    for dist in ("apache-airflow-providers-celery", "psycopg2-binary", "asyncpg"):
        try:
            importlib.metadata.version(dist)  # no import: this runs in the pytest process
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{dist} (pip install -e '.[distributed]' with .ci/constraints-airflow-3.txt)")
    return missing


def _tail(path: Path, lines: int = 60) -> str:
    return AirflowServices._tail(path, lines)


def _start_server(argv: list[str], log_path: Path, cwd: Path, user: str | None = None) -> subprocess.Popen[bytes]:
    """A server in its own session (so that its children can be signalled together), output to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def _wait_ready(
    process: subprocess.Popen[bytes],
    name: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    every: float,
    log_tail: Callable[[], str],
) -> None:
    """Until `ready()`; ServiceError if `process` exits first or `timeout` passes."""
    end = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with {process.returncode}\n" + log_tail())
        if ready():
            return
        if time.monotonic() > end:
            raise ServiceError(f"{name} not ready after {timeout:.0f}s\n" + log_tail())
        time.sleep(every)


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port>, one database `airflow`, trust auth."""

    def __init__(self, startup_timeout: float = 60.0) -> None:
        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise ServiceError("PostgreSQL server binaries not found (bash .ci/services installs them)")
        self.os_user = _postgres_os_user()
        # Its own temp folder, made by start(): the server's user must reach it (pytest's tmp_path
        # is private to root).
        self.root = Path(tempfile.gettempdir()) / "ovh-ai-e2e-pg-not-started"
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._made_root = False
        self.timings: dict[str, float] = {}

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{PG_DB}"

    def _run(self, argv: list[str], timeout: float) -> None:
        proc = subprocess.run(
            argv,
            user=self.os_user,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"`{' '.join(argv)}` exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                + self.log_tail()
            )

    def start(self) -> PostgresServer:
        t0 = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="ovh-ai-e2e-pg-"))
        self._made_root = True
        if self.os_user:
            info = pwd.getpwnam(self.os_user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=120,
        )
        self.timings["initdb_s"] = time.monotonic() - t0
        self.process = _start_server(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            self.log_path,
            self.root,
            user=self.os_user,
        )
        pg_isready = [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        _wait_ready(
            self.process,
            "postgres",
            lambda: subprocess.run(pg_isready, capture_output=True, timeout=10, check=False).returncode == 0,
            timeout=self.startup_timeout,
            every=0.2,
            log_tail=self.log_tail,
        )
        self._run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, PG_DB],
            timeout=60,
        )
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGINT)  # "fast shutdown": ends the sessions too
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(self.process.pid, signal.SIGKILL)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.process is not None:
            # Backends are in the postmaster's session; any left over (it was SIGKILLed) go too.
            _signal_group(self.process.pid, signal.SIGKILL)
        if self._made_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return f"----- postgres.log (last {lines} lines) -----\n{_tail(self.log_path, lines)}"


class RedisServer:
    """A throwaway Redis on 127.0.0.1:<port>, no persistence."""

    def __init__(self, root: Path, startup_timeout: float = 30.0) -> None:
        self.root = root
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServiceError("redis-server not found (bash .ci/services installs it)")
        self.port = free_port()
        self.log_path = root / "redis.log"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = _start_server(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            self.log_path,
            self.root,
        )
        _wait_ready(
            self.process, "redis-server", self.ping, timeout=self.startup_timeout, every=0.1, log_tail=self.log_tail
        )
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 30) -> str:
        return f"----- redis.log (last {lines} lines) -----\n{_tail(self.log_path, lines)}"


@dataclass
class WorkerHost:
    """One Celery worker "host": its own AIRFLOW_HOME, DAG folder copy and names."""

    name: str
    home: Path
    log_server_port: int
    service: Service | None = None

    @property
    def dags_folder(self) -> Path:
        return self.home / "dags"

    @property
    def cache_dir(self) -> Path:
        """The loader's default validation cache on this host ($AIRFLOW_HOME/.cache/...)."""
        return self.home / ".cache" / "ovh-ai-dagfactory"

    @property
    def log_path(self) -> Path:
        return self.home / "service-logs" / "celery-worker.log"


class CeleryAirflow(AirflowServices):
    """`AirflowServices` on Postgres with the CeleryExecutor, plus Celery workers on their own homes.

    Airflow 3 only: its workers reach the metadata DB only through the api-server's execution API,
    as on a real multi-host deployment; the task processes re-parse the DAG file of their own host.
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        *,
        sql_alchemy_conn: str,
        broker_url: str,
        workers: Sequence[WorkerHost],
        worker_concurrency: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(dags_folder, **kwargs)
        if self.major < 3:
            raise ServiceError("the distributed harness runs Airflow 3 (CeleryExecutor, execution API)")
        self.sql_alchemy_conn = sql_alchemy_conn
        self.broker_url = broker_url
        self.workers = list(workers)
        self.worker_concurrency = worker_concurrency
        # One api-server process serves the REST API and every task's execution-API calls: on two
        # loaded cores an answer can take more than the client's default 15 s.
        self.api.timeout = 60.0

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(2 * self.worker_concurrency * max(1, len(self.workers))),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.sql_alchemy_conn,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "600",
            }
        )
        return env

    def worker_env(self, worker: WorkerHost) -> dict[str, str]:
        env = self.env()
        site = worker.home / "site"
        env.update(
            {
                "AIRFLOW_HOME": str(worker.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(worker.dags_folder),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{HOSTNAME_MODULE}.hostname",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker.log_server_port),
                "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
            }
        )
        return env

    def start(self) -> CeleryAirflow:
        super().start()
        t0 = time.monotonic()
        for worker in self.workers:
            self._spawn_worker(worker)
        self.wait_workers_ready(Deadline(self._budget(self.startup_timeout)))
        self.timings["workers_s"] = time.monotonic() - t0
        return self

    def _spawn_worker(self, worker: WorkerHost) -> Service:
        for sub in ("service-logs", "pids", "site", "logs"):
            (worker.home / sub).mkdir(parents=True, exist_ok=True)
        worker.dags_folder.mkdir(exist_ok=True)
        (worker.home / "site" / f"{HOSTNAME_MODULE}.py").write_text(
            f'"""This e2e worker host\'s name, for core.hostname_callable."""\n\n\n'
            f"def hostname():\n    return {worker.name!r}\n"
        )
        argv = [
            self.python,
            "-m",
            "airflow",
            "celery",
            "worker",
            "--celery-hostname",
            f"{worker.name}@e2e",
            "--concurrency",
            str(self.worker_concurrency),
            "--without-gossip",
            "--without-mingle",
        ]
        svc = Service(f"celery-{worker.name}", argv, worker.log_path, worker.home / "pids" / "celery-worker.pid")
        svc.log_file = open(svc.log_path, "ab")
        svc.process = subprocess.Popen(
            argv,
            env=self.worker_env(worker),
            cwd=worker.home,
            stdin=subprocess.DEVNULL,
            stdout=svc.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        svc.pid_path.write_text(f"{svc.process.pid}\n")
        self.services.append(svc)
        worker.service = svc
        return svc

    def wait_workers_ready(self, deadline: Deadline) -> None:
        """Until each worker's log says Celery's "<name>@e2e ready." (it consumes from then on)."""
        while True:
            self.check_alive()
            pending = [
                w.name for w in self.workers if f"{w.name}@e2e ready." not in w.log_path.read_text(errors="replace")
            ]
            if not pending:
                return
            if deadline.expired():
                raise ServiceError(f"Celery workers {pending} not ready after {deadline.seconds:.0f}s\n" + self.logs())
            time.sleep(0.5)

    def stop(self) -> None:
        """Celery's cold shutdown (SIGQUIT) to each worker's main process first: no waiting for
        tasks. A SIGTERM to a worker's whole process group alone (what `AirflowServices.stop()`
        sends) also hits its pool processes, and the warm shutdown then waits for them until the
        SIGKILL. Then everything as usual, the workers' groups included, all waited on together."""
        if not self._stopped:
            for worker in self.workers:
                if worker.service and worker.service.alive():
                    worker.service.process.send_signal(signal.SIGQUIT)
        super().stop()

    def logs(self, lines: int = 60) -> str:
        parts = [super().logs(lines)]
        for worker in self.workers:
            parts.append(
                f"----- {worker.name}: celery worker (last {lines} lines) -----\n{_tail(worker.log_path, lines)}"
            )
            task_logs = sorted((worker.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
            for path in task_logs[-5:]:
                rel = path.relative_to(worker.home / "logs")
                parts.append(f"----- {worker.name}: task log {rel} (last {lines} lines) -----\n{_tail(path, lines)}")
        return "\n".join(parts)


class DistributedAirflow:
    """Postgres + Redis + CeleryAirflow (control plane and workers) under one root folder.

    `dags_source` is the DAG folder as a repository would hold it; `sync_dags()` copies it to the
    control plane and every worker (call it before `start()` returns for the first parse, and after
    each change: it is the deployment's git-sync). `extra_env` goes to every Airflow process.
    """

    def __init__(
        self,
        dags_source: Path,
        *,
        workers: Sequence[str] = ("worker-a", "worker-b"),
        root: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        deadline: Deadline | None = None,
        file_parse_interval: int = 30,
        worker_concurrency: int = 2,
        keep: bool = False,
    ) -> None:
        self.dags_source = Path(dags_source)
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="ovh-ai-e2e-dist-"))
        self.keep = keep
        self.deadline = deadline
        self.timings: dict[str, float] = {}
        self.postgres = PostgresServer()
        self.redis = RedisServer(self.root / "redis")
        self.control_home = self.root / "control"
        self.workers = [WorkerHost(name, self.root / name, free_port()) for name in workers]
        self.extra_env = dict(extra_env or {})
        self.file_parse_interval = file_parse_interval
        self.worker_concurrency = worker_concurrency
        self.airflow: CeleryAirflow | None = None
        self._stopped = False

    @property
    def control_dags(self) -> Path:
        return self.control_home / "dags"

    @property
    def control_cache_dir(self) -> Path:
        return self.control_home / ".cache" / "ovh-ai-dagfactory"

    def hosts_dags(self) -> list[Path]:
        """Every host's DAG folder: the control plane's (the dag-processor's), then each worker's."""
        return [self.control_dags] + [w.dags_folder for w in self.workers]

    def sync_dags(self, workers_first: bool = True) -> None:
        """Make every host's DAG folder a copy of `dags_source`, bytes and mtimes (like git-sync,
        which swaps a whole checkout). Workers first: a task queued for the new version never
        meets the old file (Airflow's LocalDagBundle is unversioned)."""
        folders = [w.dags_folder for w in self.workers] + [self.control_dags]
        if not workers_first:
            folders.reverse()
        for folder in folders:
            _mirror(self.dags_source, folder)

    def __enter__(self) -> DistributedAirflow:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _budget(self, seconds: float) -> float:
        if self.deadline is None:
            return seconds
        return min(seconds, self.deadline.remaining())

    def start(self) -> DistributedAirflow:
        t0 = time.monotonic()
        self.postgres.start()
        self.redis.start()
        self.timings["postgres_redis_s"] = time.monotonic() - t0
        self.control_home.mkdir(parents=True, exist_ok=True)
        self.sync_dags()
        self.airflow = CeleryAirflow(
            self.control_dags,
            sql_alchemy_conn=self.postgres.url,
            broker_url=self.redis.url,
            workers=self.workers,
            worker_concurrency=self.worker_concurrency,
            extra_env=self.extra_env,
            home=self.control_home,
            deadline=self.deadline,
            file_parse_interval=self.file_parse_interval,
            startup_timeout=self._budget(180),
            keep_home=True,
        )
        self.airflow.start()
        self.timings.update({f"airflow_{k}": v for k, v in self.airflow.timings.items()})
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        try:
            if self.airflow is not None:
                self.airflow.stop()
                self.timings["stop_airflow_s"] = time.monotonic() - t0
                self.timings.update({f"airflow_{k}": v for k, v in self.airflow.timings.items()})
        finally:
            try:
                self.redis.stop()
            finally:
                self.postgres.stop()
        self.timings["stop_s"] = time.monotonic() - t0
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def pids(self) -> list[int]:
        """Every live process of the deployment (Airflow's, the workers', Postgres', Redis')."""
        out = list(self.airflow._our_pids()) if self.airflow is not None else []
        for proc in (self.postgres.process, self.redis.process):
            if proc is not None and proc.poll() is None:
                out.append(proc.pid)
        return out

    def logs(self, lines: int = 60) -> str:
        parts = [self.airflow.logs(lines)] if self.airflow is not None else []
        parts += [self.postgres.log_tail(), self.redis.log_tail()]
        return "\n".join(parts)


def _mirror(source: Path, target: Path) -> None:
    """Make `target` an exact copy of `source` (files added, changed, deleted; mtimes kept)."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(source) for p in source.rglob("*")}
    for path in sorted(target.rglob("*"), reverse=True):
        rel = path.relative_to(target)
        if rel not in wanted:
            path.unlink() if path.is_file() or path.is_symlink() else shutil.rmtree(path)
    for rel in sorted(wanted):
        src, dst = source / rel, target / rel
        if src.is_dir():
            dst.mkdir(exist_ok=True)
        elif not dst.exists() or src.read_bytes() != dst.read_bytes() or src.stat().st_mtime != dst.stat().st_mtime:
            shutil.copy2(src, dst)

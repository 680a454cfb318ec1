"""Benchmark (issue 12, "Scale-out", second bullet): the factory on the distributed deployment.

Reuses the e2e harness of tests/e2e/test_distributed.py (`distributed_services.py`: PostgreSQL,
Redis, api-server, scheduler with the CeleryExecutor, dag-processor and Celery workers, each worker
with its own AIRFLOW_HOME, validation cache and DAG-folder copy, all on 127.0.0.1). For each size N
(default 200, 1,000 and 5,000 generated pipelines, the same small pipelines as the test: one chat
step, every fourth one also an embedding step) it starts a fresh deployment and reports:

  - the dag-processor's own parse duration of the loader file, as Airflow records it (its
    "DAG File Processing Stats" table, `Last Duration` of `ovh_pipelines.py`): cold (the first
    parse; the dag-processor host's validation cache is empty) and warm (the next parses, every
    `min_file_process_interval` = 10 s here, cache filled);
  - task start latency on a worker: a generated pipeline's one-step DAG (the loader file, parsed
    by the worker through the parsing-context fast path) vs a hand-written Python DAG file with
    the same operator and the same request, next to it in the same DAG folder. Each is triggered
    `--runs` times, one run at a time; from the task instance (REST): queued → start (Celery
    pick-up and the task process start; Airflow 3 records `start_date` before the task process
    parses the DAG file), start → end (parsing the DAG file, then one chat call answered after
    `--latency` s), and queued → end.

Figures are printed, never asserted. Not run in CI: it takes ~2-4 min per size on 2 cores.

    .venv-airflow3/bin/python benchmarks/bench_distributed.py [--sizes 200,1000,5000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.airflow_services import Deadline, ServiceError  # noqa: E402
from e2e.distributed_services import DistributedAirflow, generated_pipeline, missing_prerequisites  # noqa: E402

LOADER = (
    "# airflow DAG loader: one DAG per pipeline file\n"
    "from ovh_ai_dagfactory import load_pipelines\n"
    "load_pipelines(namespace=globals())\n"
)
HAND_WRITTEN_ID = "bench_hand_written"
HAND_WRITTEN = f'''\
# airflow DAG, hand-written: the same one chat step as a generated pipeline
from datetime import datetime

from airflow.sdk import DAG

from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator

with DAG("{HAND_WRITTEN_ID}", schedule=None, start_date=datetime(2024, 1, 1)):
    OVHCloudAIEndpointsChatCompletionsOperator(
        task_id="ask",
        model="Meta-Llama-3_3-70B-Instruct",
        max_tokens=20,
        messages=[{{"role": "user", "content": "Pipeline 000, revision 1."}}],
    )
'''
STATS_ROW = re.compile(
    r"ovh_pipelines\.py\s+(?:\d+\s+[\d.]+s\s+)?(?P<dags>\d+)\s+(?P<errors>\d+)\s+(?P<last>[\d.]+)s\s+(?P<at>\S+)"
)


def dag_source(root: Path, n: int) -> Path:
    dags = root / "dags"
    (dags / "pipelines").mkdir(parents=True)
    for i in range(n):
        (dags / "pipelines" / f"e2e_gen_{i:03d}.yaml").write_text(generated_pipeline(i))
    (dags / "ovh_pipelines.py").write_text(LOADER)
    (dags / f"{HAND_WRITTEN_ID}.py").write_text(HAND_WRITTEN)
    return dags


def parse_stats(log: Path) -> list[tuple[str, int, float]]:
    """(last run at, # DAGs, last duration in s) of the loader file, one per parse, in order."""
    out: list[tuple[str, int, float]] = []
    for match in STATS_ROW.finditer(log.read_text(errors="replace")):
        row = (match["at"], int(match["dags"]), float(match["last"]))
        if row not in out:
            out.append(row)
    return out


def wait_parses(dist: DistributedAirflow, n: int, count: int, deadline: Deadline) -> list[tuple[str, int, float]]:
    """Until the loader file was parsed `count` times with its n DAGs."""
    assert dist.airflow is not None
    log = dist.airflow.service_log_dir / "dag-processor.log"
    while True:
        dist.airflow.check_alive()
        rows = [row for row in parse_stats(log) if row[1] == n]
        if len(rows) >= count:
            return rows
        if deadline.expired():
            raise ServiceError(f"{len(rows)} parses of {n} DAGs seen, {count} wanted\n" + dist.logs())
        time.sleep(1)


def seconds(a: str | None, b: str | None) -> float:
    assert a and b, (a, b)
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def latencies(dist: DistributedAirflow, dag_id: str, runs: int, deadline: Deadline) -> dict[str, list[float]]:
    assert dist.airflow is not None
    api = dist.airflow.api
    out: dict[str, list[float]] = {"queued_to_start": [], "start_to_end": [], "queued_to_end": [], "hosts": []}
    for _ in range(runs):
        run_id = api.trigger(dag_id)["dag_run_id"]
        final = dist.airflow.wait_for_run(dag_id, run_id, deadline)
        tis = [ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == "ask"]
        if final["state"] != "success" or len(tis) != 1:
            raise ServiceError(f"{dag_id} run {run_id}: {final['state']}, {tis}\n" + dist.logs())
        ti = tis[0]
        out["queued_to_start"].append(seconds(ti["queued_when"], ti["start_date"]))
        out["start_to_end"].append(seconds(ti["start_date"], ti["end_date"]))
        out["queued_to_end"].append(seconds(ti["queued_when"], ti["end_date"]))
        out["hosts"].append(ti["hostname"])
    return out


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def bench_size(n: int, options: argparse.Namespace, llmock_url: str) -> dict[str, Any]:
    deadline = Deadline(options.budget)
    with tempfile.TemporaryDirectory(prefix=f"ovh-ai-bench-dist-{n}-") as tmp:
        source = dag_source(Path(tmp), n)
        env = {
            "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(
                {"conn_type": "ovhcloud_ai_endpoints", "host": llmock_url, "password": "bench-token"}
            ),
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "2",
            # The harness sets 60 s; a cold 5,000-pipeline parse must not be cut off.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "150",
        }
        t0 = time.monotonic()
        with DistributedAirflow(source, extra_env=env, deadline=deadline, file_parse_interval=10) as dist:
            started = time.monotonic() - t0
            rows = wait_parses(dist, n, 1 + options.warm, deadline)
            assert dist.airflow is not None
            dist.airflow.wait_for_dags({HAND_WRITTEN_ID, "e2e_gen_001"}, deadline)
            fast = latencies(dist, "e2e_gen_001", options.runs, deadline)
            hand = latencies(dist, HAND_WRITTEN_ID, options.runs, deadline)
            worker_entries = {w.name: len(list(w.cache_dir.glob("*/specs/*/*.json"))) for w in dist.workers}
    return {
        "n": n,
        "start_s": started,
        "cold_s": rows[0][2],
        "warm_s": [row[2] for row in rows[1:]],
        "fast": fast,
        "hand": hand,
        "worker_cache_entries": worker_entries,
        "wall_s": deadline.elapsed(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,1000,5000", help="pipeline counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="runs of each DAG for the start latency")
    parser.add_argument("--warm", type=int, default=2, help="warm parses to record after the cold one")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds llmock holds every answer")
    parser.add_argument("--budget", type=float, default=900, help="seconds per size")
    options = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        raise SystemExit("missing: " + "; ".join(missing))

    from llmock.scenarios import Delay
    from llmock.testing import LLMockServer

    load = os.getloadavg()
    print(f"2 workers x concurrency 2, CeleryExecutor, Postgres, Redis; {os.cpu_count()} cores; load {load[0]:.1f}")
    with LLMockServer() as server:
        server.state.scenarios.add(Delay(options.latency, times=None))
        for n in (int(s) for s in options.sizes.split(",")):
            r = bench_size(n, options, server.base_url("openai"))
            warm = ", ".join(f"{w:.2f}" for w in r["warm_s"])
            print(
                f"\nN={n}: deployment up in {r['start_s']:.0f} s; dag-processor parse of the loader file "
                f"(Airflow's Last Duration): cold {r['cold_s']:.2f} s, warm {warm} s"
            )
            for label, key in (("fast path (loader file)", "fast"), ("hand-written DAG file", "hand")):
                lat = r[key]
                print(
                    f"  {label:26s} queued->start {fmt(lat['queued_to_start'])}; start->end "
                    f"{fmt(lat['start_to_end'])}; queued->end {fmt(lat['queued_to_end'])}; hosts {sorted(set(lat['hosts']))}"
                )
            print(
                f"  worker cache entries (fast path builds one DAG): {r['worker_cache_entries']}; wall {r['wall_s']:.0f} s"
            )
            print(f"  load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

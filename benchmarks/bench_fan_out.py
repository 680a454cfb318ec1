"""Benchmark (issue 9): an N-item fan-out through a real scheduler vs the same N calls in one task.

Starts real Airflow services with the e2e harness (`tests/e2e/airflow_services.py`: scheduler,
DAG processor / webserver and API server on 127.0.0.1, SQLite, LocalExecutor on both lines) over
one DAG folder holding two DAGs that make the same N chat calls to llmock (a real HTTP server in
this process, every answer held for --latency seconds):

  - `bench_fan_out`: a pipeline YAML whose step has `for_each: "{{ params.documents }}"` over a
    typed array param of N items — the `summarize__for_each` items task, then N mapped task
    instances, at most `core.parallelism` at a time (no max_parallel);
  - `bench_single_task`: a hand-written DAG with ONE PythonOperator looping over the same N
    prompts through our hook (`OVHCloudAIEndpointsHook().chat_completion(...)`), one after the
    other.

Both runs are triggered over REST, one after the other. Reported per run: the run's wall time
(Airflow's own start_date → end_date of the DAG run), and for the fan-out the summed and mean
durations of the mapped task instances. Derived figures:

  - overhead per item = (fan-out wall − single-task wall) / N: what the scheduler and one task
    process per item cost in wall-clock time, with `core.parallelism` slots;
  - per mapped instance: mean task-instance duration (its own process: start, parse the DAG file,
    one call, XCom) minus the single task's time per call, and the scheduler's share of each
    slot-second: parallelism × fan-out wall / N − mean task-instance duration (queueing, state
    changes, starting the process before Airflow records a start_date).

    .venv-airflow3/bin/python benchmarks/bench_fan_out.py [--items 1000] [--latency 0.05] [--parallelism 4]
    .venv-airflow2/bin/python benchmarks/bench_fan_out.py --items 200    # Airflow 2.11

Not a test and not run in CI: it takes minutes (~2-4 min for 1,000 items on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.airflow_services import AirflowServices, Deadline  # noqa: E402

MODEL = "Meta-Llama-3_3-70B-Instruct"
TOKEN = "sk-bench-fan-out-0000"
FAN_OUT_DAG = "bench_fan_out"
SINGLE_DAG = "bench_single_task"


def prompt(index: int) -> str:
    return f"Summarize doc-{index:04d} (item {index})."


def fan_out_pipeline(items: int) -> str:
    documents = json.dumps([f"doc-{i:04d}" for i in range(items)])
    return f"""\
dag_id: {FAN_OUT_DAG}
schedule: null
start_date: 2024-01-01
params:
  documents:
    type: array
    default: {documents}
steps:
  summarize:
    type: chat
    model: {MODEL}
    for_each: "{{{{ params.documents }}}}"
    messages:
      - {{role: user, content: "Summarize {{{{ item }}}} (item {{{{ item_index }}}})."}}
"""


def single_task_dag(items: int) -> str:
    return f'''\
"""The same {items} chat calls as bench_fan_out, in one Airflow task (a DAG for the benchmark)."""
from datetime import datetime

try:
    from airflow.sdk import DAG
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def call_all():
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

    hook = OVHCloudAIEndpointsHook()
    contents = []
    for index in range({items}):
        prompt = f"Summarize doc-{{index:04d}} (item {{index}})."
        response = hook.chat_completion(model="{MODEL}", messages=[{{"role": "user", "content": prompt}}])
        contents.append(response["choices"][0]["message"]["content"])
    return contents


with DAG("{SINGLE_DAG}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PythonOperator(task_id="call_all", python_callable=call_all)
'''


def dag_folder(root: Path, items: int) -> Path:
    dags = root / "dags"
    pipelines = dags / "pipelines"
    pipelines.mkdir(parents=True)
    (pipelines / "bench_fan_out.yaml").write_text(fan_out_pipeline(items))
    (dags / "ovh_pipelines.py").write_text(
        "# airflow DAG loader: one DAG per pipeline file\n"
        "from ovh_ai_dagfactory import load_pipelines\n"
        f"load_pipelines({str(pipelines)!r}, globals())\n"
    )
    (dags / "bench_single_task.py").write_text(single_task_dag(items))
    return dags


def peak_overlap(tis: list[dict[str, Any]]) -> int:
    """The most task instances running at one instant (their recorded start/end dates)."""
    events = sorted(
        [(datetime.fromisoformat(t["start_date"]), 1) for t in tis]
        + [(datetime.fromisoformat(t["end_date"]), -1) for t in tis]
    )
    peak = running = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_once(services: AirflowServices, dag_id: str, deadline: Deadline) -> tuple[dict[str, Any], float]:
    """Trigger `dag_id`, wait for it; the finished run and the seconds this client waited."""
    started = time.monotonic()
    run = services.api.trigger(dag_id)
    final = services.wait_for_run(dag_id, run["dag_run_id"], deadline)
    waited = time.monotonic() - started
    if final["state"] != "success":
        tis = services.api.task_instances(dag_id, run["dag_run_id"])
        failed = [(t["task_id"], t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
        raise SystemExit(f"{dag_id} run {final['state']}: {failed[:20]}\n{services.logs()}")
    return final, waited


def chat_prompts(server: Any, since: int) -> list[str]:
    records = server.state.journal.records(wait=5)[since:]
    bad = [(r.path, r.status) for r in records if r.status != 200]
    if bad:
        raise SystemExit(f"llmock answered errors: {bad[:10]}")
    return [r.body["messages"][-1]["content"] for r in records if r.path.endswith("/chat/completions")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="items of the fan-out / calls of the single task")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds llmock holds every answer")
    parser.add_argument("--parallelism", type=int, default=4, help="core.parallelism (LocalExecutor slots)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    options = parser.parse_args()
    n = options.items

    from llmock.scenarios import Delay
    from llmock.testing import LLMockServer

    root = Path(tempfile.mkdtemp(prefix="bench-fan-out-"))
    try:
        dags = dag_folder(root, n)
        with LLMockServer() as server:
            server.state.scenarios.add(Delay(options.latency, times=None))
            settings = {
                "AIRFLOW__CORE__PARALLELISM": str(options.parallelism),
                # Airflow's defaults, written out because they bound the fan-out too.
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
                "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, n)),
            }
            env = {
                "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(
                    {"conn_type": "ovhcloud_ai_endpoints", "host": server.base_url("openai"), "password": TOKEN}
                ),
                **settings,
            }
            deadline = Deadline(options.timeout)
            with AirflowServices(dags, extra_env=env, deadline=deadline, local_executor_on_2x=True) as services:
                services.wait_for_dags({FAN_OUT_DAG, SINGLE_DAG}, deadline)
                line = services.api.request("GET", "/version")["version"]
                print(
                    f"Airflow {line}, LocalExecutor, SQLite; {n} items, llmock latency {options.latency * 1000:.0f} ms"
                )
                print("settings: " + ", ".join(f"{k.split('__')[-1].lower()}={v}" for k, v in settings.items()))
                print(
                    f"services up in {services.timings['start_s']:.1f} s "
                    f"(db migrate {services.timings['db_migrate_s']:.1f} s)"
                )

                seen = len(server.state.journal.records(wait=5))
                single, single_waited = run_once(services, SINGLE_DAG, deadline)
                prompts = chat_prompts(server, seen)
                assert prompts == [prompt(i) for i in range(n)], "the single task did not make the N calls in order"
                single_tis = services.api.task_instances(SINGLE_DAG, single["dag_run_id"])
                single_task_s = single_tis[0]["duration"]
                single_wall = seconds_between(single["start_date"], single["end_date"])

                seen = len(server.state.journal.records(wait=5))
                fan, fan_waited = run_once(services, FAN_OUT_DAG, deadline)
                prompts = chat_prompts(server, seen)
                assert sorted(prompts) == sorted(prompt(i) for i in range(n)), "the fan-out did not make the N calls"
                tis = services.api.task_instances(FAN_OUT_DAG, fan["dag_run_id"])
                mapped = [t for t in tis if t["task_id"] == "summarize"]
                assert sorted(t["map_index"] for t in mapped) == list(range(n)), "not N mapped task instances"
                durations = [t["duration"] for t in mapped]
                peak = peak_overlap(mapped)
                fan_wall = seconds_between(fan["start_date"], fan["end_date"])
                print(services.memory.summary())
    finally:
        shutil.rmtree(root, ignore_errors=True)

    per_call = single_task_s / n
    mean_ti = statistics.mean(durations)
    slot_s = options.parallelism * fan_wall / n
    print()
    print(f"single task ({n} calls in one PythonOperator)")
    print(f"  run wall (Airflow start→end)     : {single_wall:8.1f} s   (client waited {single_waited:.1f} s)")
    print(f"  the task itself                  : {single_task_s:8.1f} s   = {per_call * 1000:.1f} ms per call")
    print(f"fan-out ({n} mapped task instances + the items task)")
    print(f"  run wall (Airflow start→end)     : {fan_wall:8.1f} s   (client waited {fan_waited:.1f} s)")
    print(f"  task instances, summed           : {sum(durations):8.1f} s")
    print(
        f"  per task instance                : mean {mean_ti:.2f} s, median {statistics.median(durations):.2f} s, "
        f"max {max(durations):.2f} s"
    )
    print(f"  throughput                       : {n / fan_wall:8.2f} items/s, at most {peak} running at once")
    print("overhead")
    print(f"  ratio fan-out wall / single wall : {fan_wall / single_wall:8.1f}x")
    print(
        f"  per item, wall clock             : {(fan_wall - single_wall) / n * 1000:8.0f} ms   "
        "((fan-out wall - single wall) / N)"
    )
    print(
        f"  per item, inside its task        : {(mean_ti - per_call) * 1000:8.0f} ms   "
        "(mean task-instance duration - time per call in the single task)"
    )
    print(
        f"  per item, scheduler and start-up : {(slot_s - mean_ti) * 1000:8.0f} ms   "
        f"(parallelism x fan-out wall / N - mean task-instance duration; slot-seconds per item {slot_s:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Chat at volume (issue 19), benchmark P6: a chat job's throughput against the bound a
rate-limited endpoint allows, its peak memory as the input grows, and `for_each` mapped tasks
against one in-task chat step through a real Airflow.

    .venv-airflow3/bin/python benchmarks/bench_chat_job.py          # throughput + memory (~10 min on 2 CPUs):
        # 100k items, 12,000/min, 20 ms, 8 in flight; peak RSS at 1k and 100k
    .venv-airflow3/bin/python benchmarks/bench_chat_job.py --items 5000 --rss-sizes ""   # a quick look (~30 s)
    .venv-airflow3/bin/python benchmarks/bench_chat_job.py --runs memory --rss-sizes 1000,100000   # memory only
    .venv-airflow3/bin/python benchmarks/bench_chat_job.py --runs fan-out            # 100 mapped vs in-task 100, 1,000 (~2 min)
    .venv-airflow3/bin/python benchmarks/bench_chat_job.py --runs fan-out --fan-out-items 300 --in-task-items 300,1000  # ~4 min

The endpoint is tests/ovh_stub.py in its own process (its CPU is not the client's): a ROLLING 1 s
window of rpm / 60 requests (429 with Retry-After and retry-after-ms above it), every answer after
`--latency`, and, since each request carries a json_schema `response_format`, an answer that is
JSON made for the schema (`{"label": "bug"}`), checked by the job like a real one.

throughput: `hook.chat_items(...)` over a JSON Lines file of `{"id", "text"}` items, with an
  `output_schema` (a label enum), `output` a local directory (parts of 1,000 + manifest),
  `requests_per_minute` set to the stub's limit (the adaptive pacer runs at 95 % of it by design),
  in a fresh process; imports, the client and the first look at the file are outside the clock
  (reported as setup). Bound: min(rpm / 60, concurrency / latency) items/s; the fraction of it is
  reported against the limit and against 95 % of it (the pacer's ceiling).
memory: the same job's peak RSS (ru_maxrss) at each of `--rss-sizes`, each in a fresh process (the
  throughput run is the measurement at its own size). Target: within +100 MB of the smallest.
fan-out: two YAML pipelines through a real Airflow (tests/e2e/airflow_services.py: scheduler,
  dag-processor, api-server, LocalExecutor, SQLite, as bench_fan_out.py), the stub without a rate
  limit: `for_each` over M items as mapped task instances, and `for_each_mode: in_task` over the
  same items (and larger lists) as one task; Airflow's own start → end of each run.
Ratios only: timings are this machine's (2 shared CPUs: compare rows of one run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "sk-bench-0123456789abcdef"
MODEL = "Meta-Llama-3_3-70B-Instruct"
LABELS = ["bug", "billing", "feature", "other"]
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": LABELS}},
    "required": ["label"],
    "additionalProperties": False,
}
SYSTEM = "Classify the support ticket into one category."
HEADROOM = 0.95  # jobs/pacing.py's: the adaptive pacer's ceiling, as a fraction of requests_per_minute


# ---------------------------------------------------------------- the endpoint, in its own process
def serve_stub() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from ovh_stub import OVHStub

    with OVHStub(token=TOKEN) as stub:
        print(json.dumps({"base_url": stub.base_url}), flush=True)
        for line in sys.stdin:  # a setting's JSON → reset to it; "counts" → the counters; EOF → stop
            if line.startswith("{"):
                setting = json.loads(line)
                stub.reset()
                if setting.get("rpm"):
                    stub.limit_rate(setting["rpm"], window=1.0, shape="rolling")
                stub.latency, stub.record_bodies = setting["latency"], False
            # The stub's own CPU time: shows whether the endpoint, not the client, was the limit.
            print(json.dumps({**stub.counts(), "cpu_seconds": time.process_time()}), flush=True)


class Stub:
    """The driver's handle on the stub process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.base_url = json.loads(self.process.stdout.readline())["base_url"]

    def tell(self, line: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def reset(self, rpm: float | None, latency: float) -> dict[str, Any]:
        return self.tell(json.dumps({"rpm": rpm, "latency": latency}))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


# ---------------------------------------------------------------- one chat job, in its own process
def render(item: dict[str, Any], item_index: int) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Ticket {item['id']}: {item['text']}"}]


def run_worker(corpus: str, items: int, args: argparse.Namespace) -> None:
    import logging

    setup_started = time.perf_counter()
    from ovh_ai_dagfactory.compat import object_storage_path
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

    for name in ("httpx", "httpx2"):  # a line per request is not what is measured
        logging.getLogger(name).setLevel(logging.WARNING)
    hook = OVHCloudAIEndpointsHook()
    # Imports, the client and ObjectStoragePath are paid once per process, whatever the input:
    # outside the clock, reported apart.
    hook.get_conn()
    object_storage_path(corpus).exists()
    result: dict[str, Any] = {"items": items, "setup_seconds": time.perf_counter() - setup_started}
    with tempfile.TemporaryDirectory() as output:
        cpu_started = time.process_time()
        started = time.perf_counter()
        manifest = hook.chat_items(
            MODEL,
            None,
            render,
            input_file=corpus,
            output=f"file://{output}/answers",
            output_schema=SCHEMA,
            output_schema_name="classify",
            max_concurrency=args.concurrency,
            requests_per_minute=args.rpm,
            render_source=[SYSTEM, "Ticket {id}: {text}"],
        )
        result["seconds"] = time.perf_counter() - started
        result["cpu_seconds"] = time.process_time() - cpu_started
        first = json.loads((Path(output) / "answers" / manifest["parts"][0]).read_text().splitlines()[0])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for key in ("count", "failed", "requests", "retries", "rate_limited"):
        result[key] = manifest[key]
    result["parts"] = len(manifest["parts"])
    result["first_row_json"] = first["json"]
    print(json.dumps(result), flush=True)


def write_corpus(directory: Path, items: int) -> str:
    path = directory / f"tickets-{items}.jsonl"
    if not path.exists():
        with path.open("w", encoding="utf-8") as out:
            for i in range(items):
                text = (
                    f"Since the update the CSV export of report {i} crashes the page for every user of team {i % 97}."
                )
                out.write(json.dumps({"id": f"T-{i}", "text": text}) + "\n")
    return f"file://{path}"


def measure(corpus: str, items: int, env: dict[str, str], argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", "--corpus", corpus, "--items", str(items), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"chat job of {items} items failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def throughput_and_memory(args: argparse.Namespace, stub: Stub, runs: set[str]) -> None:
    argv = [f"--rpm={args.rpm}", f"--concurrency={args.concurrency}"]
    home = tempfile.mkdtemp(prefix="bench-chat-job-")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": stub.base_url, "password": TOKEN}
        ),
    }
    bound = min(args.rpm / 60, args.concurrency / args.latency)
    print(
        f"P6: chat job, endpoint limit {args.rpm:g} requests/min (rolling 1 s window), latency "
        f"{args.latency * 1000:g} ms, {args.concurrency} in flight, requests_per_minute={args.rpm:g}, "
        "output_schema (label enum), parts of 1,000 to a local directory"
    )
    print(
        f"bound: min({args.rpm / 60:g}/s, {args.concurrency}/{args.latency:g}s) = {bound:,.1f} items/s "
        f"(the pacer's ceiling, 95 % of the limit: {min(bound, HEADROOM * args.rpm / 60):,.1f} items/s)"
    )
    directory = Path(tempfile.mkdtemp(prefix="bench-chat-job-input-"))
    by_size: dict[int, dict[str, Any]] = {}
    try:
        if "throughput" in runs:
            corpus = write_corpus(directory, args.items)
            before = stub.reset(args.rpm, args.latency)
            result = measure(corpus, args.items, env, argv)
            after = stub.tell("counts")
            by_size[args.items] = result
            seconds = result["seconds"]
            rate = result["count"] / seconds
            ceiling = min(bound, HEADROOM * args.rpm / 60)
            stub_cpu = after["cpu_seconds"] - before["cpu_seconds"]
            requests = max(1, after["requests"])
            print(
                f"\n{'items':>8} {'seconds':>8} {'items/s':>8} {'of bound':>9} {'of 95 %':>8} {'requests':>9}"
                f" {'429s':>5} {'retries':>7} {'failed':>6} {'client CPU':>11} {'stub CPU':>9} {'setup':>6}"
            )
            print(
                f"{result['count']:>8,} {seconds:>8.1f} {rate:>8.1f} {rate / bound:>9.1%} {rate / ceiling:>8.1%} "
                f"{after['requests']:>9,} {after['429']:>5,} {result['retries']:>7,} {result['failed']:>6,} "
                f"{1000 * result['cpu_seconds'] / requests:>8.2f} ms {1000 * stub_cpu / requests:>6.2f} ms "
                f"{result['setup_seconds']:>5.1f}s"
            )
            print(
                f"(manifest: {result['requests']:,} requests, {result['rate_limited']} rate-limited, "
                f"{result['parts']} parts, first row's json {result['first_row_json']}; "
                f"client CPU {result['cpu_seconds']:.1f} s = {result['cpu_seconds'] / seconds:.0%} of a core, "
                f"stub CPU {stub_cpu:.1f} s = {stub_cpu / seconds:.0%}; CPU per request, each process; "
                "setup: imports and client, not timed)"
            )
        if "memory" in runs:
            print("\npeak RSS of the chat job (chat_items from a JSON Lines file to a directory):")
            sizes = [int(s) for s in args.rss_sizes.split(",") if s]
            peaks = {}
            for size in sizes:
                result = by_size.get(size)  # the throughput run is the measurement at its own size
                if result is None:
                    stub.reset(args.rpm, args.latency)
                    result = measure(write_corpus(directory, size), size, env, argv)
                peaks[size] = float(result["peak_rss_mb"])
                print(f"  {size:>8,} items: {peaks[size]:7.1f} MB  ({result['seconds']:.1f} s)")
            if len(peaks) > 1:
                print(
                    f"  growth {sizes[0]:,} → {sizes[-1]:,}: {peaks[sizes[-1]] - peaks[sizes[0]]:+.1f} MB "
                    "(target ≤ +100 MB)"
                )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------- for_each vs in one task, through Airflow
MAPPED_DAG = "bench_chat_mapped"


def in_task_dag(items: int) -> str:
    return f"bench_chat_in_task_{items}"


def pipeline(dag_id: str, items: int, in_task: bool, rpm: float, concurrency: int) -> str:
    tickets = json.dumps([{"id": f"T-{i}", "text": f"Ticket text number {i}."} for i in range(items)])
    mode = (
        f"    for_each_mode: in_task\n    max_concurrency: {concurrency}\n    requests_per_minute: {rpm:g}\n"
        if in_task
        else ""
    )
    return f"""\
dag_id: {dag_id}
schedule: null
start_date: 2024-01-01
params:
  tickets:
    type: array
    default: {tickets}
steps:
  classify:
    type: chat
    model: {MODEL}
    for_each: "{{{{ params.tickets }}}}"
{mode}    output_schema: {json.dumps(SCHEMA)}
    messages:
      - {{role: system, content: {SYSTEM}}}
      - {{role: user, content: "Ticket {{{{ item.id }}}}: {{{{ item.text }}}}"}}
"""


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def fan_out(args: argparse.Namespace, stub: Stub) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from e2e.airflow_services import AirflowServices, Deadline

    in_task_sizes = [int(s) for s in args.in_task_items.split(",") if s]
    root = Path(tempfile.mkdtemp(prefix="bench-chat-fan-out-"))
    pipelines = root / "dags" / "pipelines"
    pipelines.mkdir(parents=True)
    dags = {MAPPED_DAG: pipeline(MAPPED_DAG, args.fan_out_items, False, args.in_task_rpm, args.concurrency)}
    for size in in_task_sizes:
        dags[in_task_dag(size)] = pipeline(in_task_dag(size), size, True, args.in_task_rpm, args.concurrency)
    for dag_id, text in dags.items():
        (pipelines / f"{dag_id}.yaml").write_text(text)
    (root / "dags" / "ovh_pipelines.py").write_text(
        "# airflow DAG loader: one DAG per pipeline file\n"
        "from ovh_ai_dagfactory import load_pipelines\n"
        f"load_pipelines({str(pipelines)!r}, globals())\n"
    )
    settings = {
        "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, args.fan_out_items)),
    }
    env = {
        "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": stub.base_url, "password": TOKEN}
        ),
        **settings,
    }
    rows = []
    try:
        deadline = Deadline(args.timeout)
        with AirflowServices(root / "dags", extra_env=env, deadline=deadline, local_executor_on_2x=True) as services:
            services.wait_for_dags(set(dags), deadline)
            version = services.api.request("GET", "/version")["version"]
            print(
                f"\nfor_each vs in one task: Airflow {version}, LocalExecutor, SQLite, "
                + ", ".join(f"{k.split('__')[-1].lower()}={v}" for k, v in settings.items())
                + f"; stub latency {args.latency * 1000:g} ms, no rate limit; in-task: {args.concurrency} in flight, "
                f"requests_per_minute={args.in_task_rpm:g}; services up in {services.timings['start_s']:.1f} s"
            )
            order = [(MAPPED_DAG, args.fan_out_items)] + [(in_task_dag(size), size) for size in in_task_sizes]
            # The in-task runs first (short), the mapped run last: a slow mapped run cannot starve them.
            for dag_id, items in order[1:] + order[:1]:
                stub.reset(None, args.latency)
                run = services.api.trigger(dag_id)
                final = services.wait_for_run(dag_id, run["dag_run_id"], deadline)
                seen = stub.tell("counts")
                tis = services.api.task_instances(dag_id, run["dag_run_id"])
                if final["state"] != "success":
                    failed = [(t["task_id"], t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
                    raise SystemExit(f"{dag_id} run {final['state']}: {failed[:20]}\n{services.logs()}")
                chat = [t for t in tis if t["task_id"] == "classify"]
                rows.append(
                    {
                        "dag": dag_id,
                        "items": items,
                        "mapped": dag_id == MAPPED_DAG,
                        "wall": seconds_between(final["start_date"], final["end_date"]),
                        "task_seconds": sum(t["duration"] for t in chat),
                        "instances": len(chat),
                        "requests": seen["requests"],
                    }
                )
                print(f"  {dag_id}: {rows[-1]['wall']:.1f} s", flush=True)
            print(services.memory.summary())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{'run':<28} {'items':>6} {'task instances':>14} {'run wall':>9} {'per item':>9} {'tasks summed':>12} "
        f"{'requests':>8}"
    )
    for row in rows:
        kind = "for_each, mapped" if row["mapped"] else "for_each_mode: in_task"
        print(
            f"{kind:<28} {row['items']:>6,} {row['instances']:>14,} {row['wall']:>8.1f}s "
            f"{1000 * row['wall'] / row['items']:>7.0f}ms {row['task_seconds']:>11.1f}s {row['requests']:>8,}"
        )
    mapped = next((r for r in rows if r["mapped"]), None)
    same = next((r for r in rows if not r["mapped"] and mapped and r["items"] == mapped["items"]), None)
    if mapped and same:
        print(f"mapped / in-task at {mapped['items']} items: {mapped['wall'] / same['wall']:.1f}× the wall time")


# ---------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="items of the throughput run")
    parser.add_argument("--rpm", type=float, default=12_000, help="the endpoint's limit, and the client's pacing")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=8, help="max_concurrency: requests in flight")
    parser.add_argument("--rss-sizes", default="1000,100000", help="items of each peak-RSS measurement")
    parser.add_argument("--runs", default="throughput,memory", help="throughput, memory, fan-out")
    parser.add_argument("--fan-out-items", type=int, default=100, help="fan-out: items of the mapped run")
    parser.add_argument("--in-task-items", default="100,1000", help="fan-out: items of each in-task run")
    parser.add_argument("--in-task-rpm", type=float, default=60_000, help="fan-out: the in-task step's pacing")
    parser.add_argument("--parallelism", type=int, default=4, help="fan-out: core.parallelism")
    parser.add_argument("--timeout", type=float, default=1800, help="fan-out: give up after this many seconds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_stub()
    if args.worker:
        return run_worker(args.corpus, args.items, args)

    runs = set(args.runs.split(","))
    unknown = runs - {"throughput", "memory", "fan-out"}
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    stub = Stub()
    try:
        if runs & {"throughput", "memory"}:
            throughput_and_memory(args, stub, runs)
        if "fan-out" in runs:
            fan_out(args, stub)
    finally:
        stub.close()


if __name__ == "__main__":
    main()

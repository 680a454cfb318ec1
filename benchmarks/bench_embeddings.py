"""Embeddings at volume (issue 10), benchmark P4: throughput against the bound a rate-limited endpoint
allows, and peak memory as the corpus grows.

    python benchmarks/bench_embeddings.py                    # 100k texts, RPM 6000, 50 ms, batches of 64
    python benchmarks/bench_embeddings.py --texts 20000      # smaller
    python benchmarks/bench_embeddings.py --runs provider --rss-sizes ""   # the provider's throughput only

The endpoint is tests/ovh_stub.py in its own process (so its CPU is not the client's): it answers
429 with Retry-After / retry-after-ms above `--rpm` requests per minute (counted over a sliding
window of one second, i.e. rpm/60 per second: a one-minute window would never fill in a run this
short), after a fixed `--latency`, and 413 above a 2 MB body (OVH's limit). Vectors have
`--dimensions` floats (64 by default: at 1024 the JSON of 100 answers a second is more than the two
processes' CPU on a small machine, and the benchmark would measure JSON, not scheduling).

The stub writes each answer in one buffered write with Nagle off (two writes made every answer wait
for the client's delayed ACK, 40 ms, and the benchmark measured that) and takes its vectors from a
table; its CPU per request is reported next to the client's, to show which side was the limit.

Bound: min(rpm / 60, max_concurrency / latency) × batch_size texts per second. Measured, each in a
fresh process reading a JSON Lines file:
- today's behaviour: the whole input in one request (`create_embedding`);
- a sequential loop of `create_embedding` over batches (the SDK's own retries for 429s);
- the provider: `embed_to_storage` (batched, concurrent, paced, parts written to a directory);
and the provider's peak RSS at 1k / 10k / 100k texts (target: within +100 MB of the 1k run).
Ratios only: timings are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "sk-bench-0123456789abcdef"
MODEL = "BGE-M3"


# ---------------------------------------------------------------- the endpoint, in its own process
def serve_stub(rpm: float, latency: float, dimensions: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from ovh_stub import OVHStub

    with OVHStub(token=TOKEN) as stub:
        stub.limit_rate(rpm, window=1.0)
        stub.latency = latency
        stub.dimensions = dimensions
        stub.max_body_bytes = 2_000_000
        stub.record_bodies = False
        print(json.dumps({"base_url": stub.base_url}), flush=True)
        for line in sys.stdin:  # "counts" → the stub's counters; EOF → stop
            if line.strip() == "reset":
                stub.reset()
                stub.limit_rate(rpm, window=1.0)
                stub.latency, stub.dimensions, stub.max_body_bytes, stub.record_bodies = (
                    latency,
                    dimensions,
                    2_000_000,
                    False,
                )
            # The stub's own CPU time: shows whether the endpoint, not the client, was the limit.
            print(json.dumps({**stub.counts(), "cpu_seconds": time.process_time()}), flush=True)


# ---------------------------------------------------------------- one measurement, in its own process
def run_worker(mode: str, corpus: str, texts: int, args: argparse.Namespace) -> None:
    import logging

    setup_started = time.perf_counter()
    from ovh_ai_dagfactory.calls.errors import OVHCloudAIEndpointsError
    from ovh_ai_dagfactory.compat import object_storage_path
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
    from ovh_ai_dagfactory.jobs.storage import read_texts

    for name in ("httpx", "httpx2"):  # a line per request is not what is measured (the SDK's httpx is either)
        logging.getLogger(name).setLevel(logging.WARNING)
    hook = OVHCloudAIEndpointsHook()
    # Imports and the client are paid once per process, whatever the corpus: outside the clock, in
    # every mode, and reported apart (the openai SDK and Airflow's ObjectStoragePath, ~1-2 s here).
    hook.get_conn()
    object_storage_path(corpus).exists()
    result: dict[str, object] = {"mode": mode, "texts": texts, "setup_seconds": time.perf_counter() - setup_started}
    cpu_started = time.process_time()
    started = time.perf_counter()
    try:
        if mode == "today":
            batch = [text for _, text in read_texts(corpus)]
            hook.create_embedding(MODEL, batch)
        elif mode == "sequential":
            batch = []
            for _, text in read_texts(corpus):
                batch.append(text)
                if len(batch) == args.batch_size:
                    hook.create_embedding(MODEL, batch)
                    batch = []
            if batch:
                hook.create_embedding(MODEL, batch)
        else:
            with tempfile.TemporaryDirectory() as output:
                manifest = hook.embed_to_storage(
                    MODEL,
                    f"file://{output}/vectors",
                    input_file=corpus,
                    batch_size=args.batch_size,
                    max_concurrency=args.concurrency,
                    requests_per_minute=args.rpm,
                )
                result["retries"], result["rate_limited"] = manifest["retries"], manifest["rate_limited"]
        result["seconds"] = time.perf_counter() - started
    except OVHCloudAIEndpointsError as error:
        result["seconds"] = time.perf_counter() - started
        result["refused"] = str(error).split(". ")[0][:160]
    result["cpu_seconds"] = time.process_time() - cpu_started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- driver
def write_corpus(directory: Path, texts: int) -> str:
    path = directory / f"corpus-{texts}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(texts):
            out.write(
                json.dumps({"id": f"doc-{i}", "text": f"short text number {i} about scheduling workflows"}) + "\n"
            )
    return f"file://{path}"


def measure(mode: str, corpus: str, texts: int, env: dict[str, str], argv: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--corpus", corpus, "--texts", str(texts), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--rpm", type=float, default=6000, help="the endpoint's limit, and the client's pacing")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--dimensions", type=int, default=64)
    parser.add_argument("--sequential-texts", type=int, default=20_000, help="texts of the (slow) sequential run")
    parser.add_argument("--rss-sizes", default="1000,10000,100000")
    parser.add_argument("--runs", default="today,sequential,provider", help="which of the three runs to make")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_stub(args.rpm, args.latency, args.dimensions)
    if args.worker:
        return run_worker(args.worker, args.corpus, args.texts, args)

    argv = [
        f"--rpm={args.rpm}",
        f"--latency={args.latency}",
        f"--batch-size={args.batch_size}",
        f"--concurrency={args.concurrency}",
        f"--dimensions={args.dimensions}",
    ]
    stub = subprocess.Popen(
        [sys.executable, __file__, "--serve", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert stub.stdin is not None and stub.stdout is not None
    base_url = json.loads(stub.stdout.readline())["base_url"]

    def counts(reset: bool = False) -> dict[str, int]:
        assert stub.stdin is not None and stub.stdout is not None
        stub.stdin.write("reset\n" if reset else "counts\n")
        stub.stdin.flush()
        return json.loads(stub.stdout.readline())

    home = tempfile.mkdtemp(prefix="bench-embeddings-")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": base_url, "password": TOKEN}
        ),
    }
    bound_rps = min(args.rpm / 60, args.concurrency / args.latency)
    bound = bound_rps * args.batch_size
    print(
        f"P4: {args.texts:,} texts, endpoint limit {args.rpm:g} requests/min, latency {args.latency * 1000:g} ms, "
        f"batches of {args.batch_size}, {args.concurrency} in flight, {args.dimensions} dimensions"
    )
    print(
        f"bound: min({args.rpm / 60:g}/s, {args.concurrency}/{args.latency:g}s) × {args.batch_size} = {bound:,.0f} texts/s"
    )
    try:
        with tempfile.TemporaryDirectory() as directory:
            corpus = write_corpus(Path(directory), args.texts)
            sequential_texts = min(args.texts, args.sequential_texts)
            runs = [
                ("today", corpus, args.texts),
                ("sequential", None, sequential_texts),
                ("provider", corpus, args.texts),
            ]
            rows = []
            for mode, source, size in [run for run in runs if run[0] in args.runs.split(",")]:
                before = counts(reset=True)
                source = source or write_corpus(Path(directory), size)
                result = measure(mode, source, size, env, argv)
                after = counts()
                after["stub_cpu"] = after["cpu_seconds"] - before["cpu_seconds"]
                rows.append((mode, result, after))

            print(
                f"\n{'run':<11} {'texts':>8} {'seconds':>8} {'texts/s':>8} {'of bound':>8} {'requests':>8} {'429s':>5}"
                f" {'client CPU':>11} {'stub CPU':>9} {'setup':>6}"
            )
            for mode, result, seen in rows:
                seconds = float(result["seconds"])  # type: ignore[arg-type]
                if "refused" in result:
                    print(f"{mode:<11} {result['texts']:>8,} {seconds:>8.1f}  refused: {result['refused']}")
                    continue
                rate = int(result["texts"]) / seconds  # type: ignore[call-overload]
                requests = max(1, seen["requests"])
                print(
                    f"{mode:<11} {result['texts']:>8,} {seconds:>8.1f} {rate:>8,.0f} {rate / bound:>8.1%} "
                    f"{seen['requests']:>8,} {seen['429']:>5,} "
                    f"{1000 * float(result['cpu_seconds']) / requests:>8.1f} ms "  # type: ignore[arg-type]
                    f"{1000 * seen['stub_cpu'] / requests:>6.1f} ms {float(result['setup_seconds']):>5.1f}s"  # type: ignore[arg-type]
                )
            print("(CPU: per request, client process and stub process; setup: imports and client, not timed)")
            by_mode = {mode: result for mode, result, _ in rows}
            if {"sequential", "provider"} <= by_mode.keys() and "refused" not in by_mode["sequential"]:
                ratio = (args.texts / float(by_mode["provider"]["seconds"])) / (  # type: ignore[arg-type]
                    int(by_mode["sequential"]["texts"]) / float(by_mode["sequential"]["seconds"])  # type: ignore[call-overload, arg-type]
                )
                print(f"provider vs sequential loop: {ratio:.1f}× the throughput")

            print("\npeak RSS of the provider (embed_to_storage from a JSON Lines file to a directory):")
            sizes = [int(s) for s in args.rss_sizes.split(",") if s]
            peaks = {}
            for size in sizes:
                # The throughput run above is the measurement at its own size.
                result = by_mode.get("provider") if size == args.texts else None
                if result is None:
                    result = measure("provider", write_corpus(Path(directory), size), size, env, argv)
                peaks[size] = float(result["peak_rss_mb"])  # type: ignore[arg-type]
                print(f"  {size:>8,} texts: {peaks[size]:7.1f} MB  ({float(result['seconds']):.1f} s)")  # type: ignore[arg-type]
            if len(peaks) > 1:
                print(
                    f"  growth {sizes[0]:,} → {sizes[-1]:,}: {peaks[sizes[-1]] - peaks[sizes[0]]:+.1f} MB (target ≤ +100 MB)"
                )
    finally:
        stub.stdin.close()
        stub.wait(timeout=10)


if __name__ == "__main__":
    main()

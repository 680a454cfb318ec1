"""The pacer against limiter shapes (issue 19): the fraction of the bound (ideal time / measured time),
the 429s and the requests, for the exact pacer (starts 60/rpm apart, every 429 paused for its whole
Retry-After: the pacer before issue 19) and the adaptive one (jobs/pacing.py), in the same run,
interleaved scenario by scenario.

    python benchmarks/bench_pacing.py                        # every scenario, both pacers
    python benchmarks/bench_pacing.py --scenarios rolling,fixed --repeat 2
    python benchmarks/bench_pacing.py --scale 0.25           # a quarter of the texts (a quick look)

The endpoint is tests/ovh_stub.py in its own process (its CPU is not the client's), told before
each measurement which limiter to count with (tests/stub_limits.py). Each measurement is
`embed_to_storage` in a fresh process (imports and the client outside the clock), with
`requests_per_minute` set to the endpoint's limit, as a user who read the limit would set it.

Scenarios (the issue's: 20,000 texts, batches of 50, 20 requests/s, 0.1 s per request, 8 in flight):
- rolling:       a sliding window of 1 s holding 20 requests; 429 with Retry-After and retry-after-ms;
- rolling-s:     the same, Retry-After in whole seconds only (a wait of ms said as "1");
- fixed:         a counter of 20 reset at each whole second;
- bucket:        a token bucket, 20 tokens/s, burst 5 (nginx limit_req);
- p4:            benchmark P4's endpoint (bench_embeddings.py): 6,000 requests/min over a rolling 1 s
                 window, 50 ms, batches of 64, 8 in flight, 100,000 texts;
- one-item:      units of one item (a chat job's shape): 2,000 single-text requests, rolling 20/s.
Bound: requests × max(60 / rpm, latency / in flight) seconds: the limit, or the concurrency when it
binds first. Ratios only: timings are this machine's (2 shared CPUs: compare rows of one run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "sk-bench-0123456789abcdef"
MODEL = "BGE-M3"

# name: texts, batch size, endpoint's requests/min, latency s, in flight, limiter settings
SCENARIOS: dict[str, dict[str, object]] = {
    "rolling": {"texts": 20_000, "batch": 50, "rpm": 1200, "latency": 0.1, "flight": 8, "shape": "rolling"},
    "rolling-s": {
        "texts": 20_000,
        "batch": 50,
        "rpm": 1200,
        "latency": 0.1,
        "flight": 8,
        "shape": "rolling",
        "retry_after_ms": False,
    },
    "fixed": {"texts": 20_000, "batch": 50, "rpm": 1200, "latency": 0.1, "flight": 8, "shape": "fixed"},
    "bucket": {"texts": 20_000, "batch": 50, "rpm": 1200, "latency": 0.1, "flight": 8, "shape": "bucket", "burst": 5},
    "p4": {"texts": 100_000, "batch": 64, "rpm": 6000, "latency": 0.05, "flight": 8, "shape": "rolling"},
    "one-item": {"texts": 2_000, "batch": 1, "rpm": 1200, "latency": 0.1, "flight": 8, "shape": "rolling"},
}
PACERS = ("exact", "adaptive")


# ---------------------------------------------------------------- the endpoint, in its own process
def serve_stub() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from ovh_stub import OVHStub

    with OVHStub(token=TOKEN) as stub:
        print(json.dumps({"base_url": stub.base_url}), flush=True)
        for line in sys.stdin:  # a scenario's JSON → reset to it; "counts" → the counters; EOF → stop
            if line.startswith("{"):
                scenario = json.loads(line)
                stub.reset()
                stub.limit_rate(
                    scenario["rpm"],
                    window=1.0,
                    shape=scenario["shape"],
                    burst=scenario.get("burst", 0),
                    retry_after_ms=scenario.get("retry_after_ms", True),
                )
                stub.latency, stub.dimensions, stub.record_bodies = scenario["latency"], 64, False
            print(json.dumps(stub.counts()), flush=True)


# ---------------------------------------------------------------- one measurement, in its own process
def run_worker(pacer: str, corpus: str, scenario: dict[str, object]) -> None:
    import functools
    import logging

    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
    from ovh_ai_dagfactory.jobs import pacing, runner

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if pacer == "exact":  # the pacer before issue 19; not a user option, so selected here
        runner.RequestPacer = functools.partial(pacing.RequestPacer, adaptive=False)  # type: ignore[misc]
    hook = OVHCloudAIEndpointsHook()
    hook.get_conn()
    with tempfile.TemporaryDirectory() as output:
        started = time.perf_counter()
        manifest = hook.embed_to_storage(
            MODEL,
            f"file://{output}/vectors",
            input_file=corpus,
            batch_size=int(scenario["batch"]),  # type: ignore[call-overload]
            max_concurrency=int(scenario["flight"]),  # type: ignore[call-overload]
            requests_per_minute=float(scenario["rpm"]),  # type: ignore[arg-type]
        )
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rate_limited": manifest["rate_limited"]}), flush=True)


# ---------------------------------------------------------------- driver
def write_corpus(directory: Path, texts: int) -> str:
    path = directory / f"corpus-{texts}.jsonl"
    if not path.exists():
        with path.open("w", encoding="utf-8") as out:
            for i in range(texts):
                out.write(json.dumps({"id": f"doc-{i}", "text": f"short text number {i} about pacing"}) + "\n")
    return f"file://{path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--pacers", default=",".join(PACERS))
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each pacer per scenario")
    parser.add_argument("--scale", type=float, default=1.0, help="a fraction of each scenario's texts")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_stub()
    if args.worker:
        return run_worker(args.worker, args.corpus, json.loads(args.scenario))

    stub = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert stub.stdin is not None and stub.stdout is not None
    base_url = json.loads(stub.stdout.readline())["base_url"]

    def tell(line: str) -> dict[str, int]:
        assert stub.stdin is not None and stub.stdout is not None
        stub.stdin.write(line + "\n")
        stub.stdin.flush()
        return json.loads(stub.stdout.readline())

    home = tempfile.mkdtemp(prefix="bench-pacing-")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": base_url, "password": TOKEN}
        ),
    }
    print(f"{'scenario':<10} {'pacer':<9} {'of bound':>8} {'429s':>5} {'requests':>8} {'seconds':>8} {'ideal':>6}")
    try:
        with tempfile.TemporaryDirectory() as directory:
            for name in args.scenarios.split(","):
                scenario = dict(SCENARIOS[name])
                scenario["texts"] = max(1, int(int(scenario["texts"]) * args.scale))  # type: ignore[call-overload]
                corpus = write_corpus(Path(directory), int(scenario["texts"]))  # type: ignore[call-overload]
                units = math.ceil(int(scenario["texts"]) / int(scenario["batch"]))  # type: ignore[call-overload]
                per_unit = max(60 / float(scenario["rpm"]), float(scenario["latency"]) / int(scenario["flight"]))  # type: ignore[arg-type, call-overload]
                ideal = units * per_unit
                for _ in range(args.repeat):
                    for pacer in args.pacers.split(","):  # interleaved: the machine's load falls on both
                        tell(json.dumps(scenario))
                        done = subprocess.run(
                            [
                                sys.executable,
                                __file__,
                                "--worker",
                                pacer,
                                "--corpus",
                                corpus,
                                "--scenario",
                                json.dumps(scenario),
                            ],
                            env=env,
                            capture_output=True,
                            text=True,
                            check=False,
                        )
                        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                        if done.returncode != 0 or not lines:
                            raise SystemExit(f"{name}/{pacer} failed:\n{done.stderr[-3000:]}")
                        result = json.loads(lines[-1])
                        seen = tell("counts")
                        seconds = float(result["seconds"])
                        print(
                            f"{name:<10} {pacer:<9} {ideal / seconds:>8.1%} {seen['429']:>5,} {seen['requests']:>8,} "
                            f"{seconds:>8.1f} {ideal:>6.1f}",
                            flush=True,
                        )
    finally:
        stub.stdin.close()
        stub.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Batch API (issue 11): worker-slot time of 1,000 chat requests, synchronous vs batch (deferrable).

    python benchmarks/bench_batch.py                       # 1,000 requests, 20 ms per HTTP call
    python benchmarks/bench_batch.py --requests 200 --latency 0.1

The endpoint is the batch stub (tests/ovh_batch_stub.py) on 127.0.0.1, answering every HTTP call
after `--latency` seconds (a stand-in for a model's answer time; real answers take seconds).

- synchronous: one chat completion per request through the hook, as 1,000 mapped tasks of the
  chat operator would make them; the slot time is the sum of the calls (Airflow's per-task overhead,
  about a second per task, is left out: in favour of the synchronous side);
- batch (deferrable): `execute()` up to the deferral (JSONL built, uploaded, batch created), then
  the trigger's wait (in the triggerer, no worker slot; polled every 10 ms here), then
  `execute_complete()` (results downloaded and mapped back). The slot time is the two worker parts.

Prints the figures; timings are this machine's, the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
TOKEN = "sk-bench-0123456789abcdef"
MODEL = "Meta-Llama-3_3-70B-Instruct"


class _TaskInstance:
    dag_id, task_id, run_id, map_index = "bench_batch", "batch", "manual__bench", -1

    def xcom_push(self, key: str, value: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the stub takes per HTTP call")
    args = parser.parse_args()

    from ovh_batch_stub import OVHBatchStub

    with OVHBatchStub(token=TOKEN) as stub:
        conn = {"conn_type": "ovhcloud_ai_endpoints", "host": stub.base_url, "password": TOKEN}
        os.environ["AIRFLOW_CONN_OVH_AI_ENDPOINTS_DEFAULT"] = json.dumps(conn)
        stub.record_bodies = False
        stub.latency = args.latency
        inputs = [[{"role": "user", "content": f"question {i}"}] for i in range(args.requests)]

        sync_seconds = _synchronous(inputs)
        worker, wait, polls = _batch(inputs, stub)

    print(f"{args.requests} chat requests, stub latency {args.latency * 1000:.0f} ms per HTTP call")
    print(
        f"  synchronous: worker-slot time {sync_seconds:8.2f} s  ({sync_seconds / args.requests * 1000:.1f} ms/request)"
    )
    print(f"  batch:       worker-slot time {worker:8.2f} s  (+ {wait:.2f} s in the triggerer, {polls} polls)")
    print(f"  ratio:       {sync_seconds / worker:.0f}x less worker-slot time with batch")


def _synchronous(inputs: list) -> float:
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

    hook = OVHCloudAIEndpointsHook()
    started = time.perf_counter()
    for messages in inputs:
        hook.chat_completion(model=MODEL, messages=messages)
    return time.perf_counter() - started


def _batch(inputs: list, stub: object) -> tuple[float, float, int]:
    from ovh_ai_dagfactory.compat import DAG
    from ovh_ai_dagfactory.operators.batch import OVHCloudAIEndpointsBatchOperator

    with DAG(dag_id="bench_batch", schedule=None):
        operator = OVHCloudAIEndpointsBatchOperator(
            task_id="batch", kind="chat", model=MODEL, inputs=inputs, poll_interval=0.01, max_poll_interval=0.01
        )
    context = {"ti": _TaskInstance()}
    started = time.perf_counter()
    try:
        operator.execute(context)  # type: ignore[arg-type]
        raise SystemExit("the operator did not defer")
    except BaseException as deferral:  # TaskDeferred
        if type(deferral).__name__ != "TaskDeferred":
            raise
        trigger, kwargs = deferral.trigger, deferral.kwargs  # type: ignore[attr-defined]
    submitted = time.perf_counter()
    event = asyncio.run(_first_event(trigger))
    ended = time.perf_counter()
    responses = operator.execute_complete(context, event, **kwargs)  # type: ignore[arg-type]
    completed = time.perf_counter()
    assert len(responses) == len(inputs) and all(responses)
    polls = sum(1 for r in stub.requests if r.method == "GET" and "/batches/" in r.path)  # type: ignore[attr-defined]
    return (submitted - started) + (completed - ended), ended - submitted, polls


async def _first_event(trigger: object) -> dict:
    async for event in trigger.run():  # type: ignore[attr-defined]
        return event.payload
    raise SystemExit("the trigger fired no event")


if __name__ == "__main__":
    main()

"""The adaptive pacer (issue 19): a pace a little under requests_per_minute, slowed after a 429 and
creeping back after successes, a whole-second Retry-After probed, the restart after a pause spaced;
and jobs that stay correct against every limiter shape of the stub (tests/stub_limits.py).

The pace's arithmetic is checked with an injected clock. Against the stub, behaviour is asserted
(every text answered once, who got 429s and how many) with margins a busy machine cannot break: a
busy machine sends later, which only ever means fewer 429s for the adaptive pacer, and the exact
pacer is run at twice the limit, where nothing but a client slower than the limit could spare it.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
import time

import pytest
from ovh_stub import _embeddings

from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.jobs.batches import Batch
from ovh_ai_dagfactory.jobs.embeddings import EMBEDDING
from ovh_ai_dagfactory.jobs.host_pacing import PACING_DIR_ENV, FileState, host_pacer
from ovh_ai_dagfactory.jobs.pacing import (
    DECREASE,
    HEADROOM,
    INCREASE_AFTER,
    MIN_FRACTION,
    STEP,
    RequestPacer,
)
from ovh_ai_dagfactory.jobs.progress import JobProgress
from ovh_ai_dagfactory.jobs.runner import run_batches
from provider.shared import REPO_ROOT

MODEL = "BGE-M3"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the pace's arithmetic (an injected clock) ------------------------------------------------------


def test_the_pace_starts_a_little_under_the_limit():
    clock = Clock()
    pacer = RequestPacer(60_000, clock=clock)  # one start a ms at the limit: the real sleeps are short
    starts = [pacer.wait_turn() for _ in range(3)]

    assert pacer.fraction() == HEADROOM
    assert starts[1] - starts[0] == pytest.approx(0.001 / HEADROOM)
    assert starts[2] - starts[1] == pytest.approx(0.001 / HEADROOM)


def test_after_a_429_the_pace_drops_once_per_round_and_creeps_back_to_the_headroom():
    clock = Clock()
    pacer = RequestPacer(600, clock=clock)
    started_before = clock.now
    clock.now += 1
    pacer.rate_limited(0.05, started=clock.now)
    assert pacer.fraction() == pytest.approx(HEADROOM * DECREASE)
    # Another request of the same round (started before the decrease): no second cut.
    pacer.rate_limited(0.05, started=started_before)
    assert pacer.fraction() == pytest.approx(HEADROOM * DECREASE)

    for _ in range(INCREASE_AFTER - 1):
        pacer.succeeded()
    assert pacer.fraction() == pytest.approx(HEADROOM * DECREASE)  # not yet a run
    pacer.succeeded()
    assert pacer.fraction() == pytest.approx(HEADROOM * DECREASE + STEP)
    for _ in range(100 * INCREASE_AFTER):
        pacer.succeeded()
    assert pacer.fraction() == HEADROOM  # never above it

    for _ in range(50):  # a round after another, each started after the last cut
        clock.now += 1
        pacer.rate_limited(0.05, started=clock.now)
    assert pacer.fraction() == MIN_FRACTION


def test_a_whole_second_retry_after_is_probed_and_a_precise_one_honoured():
    clock = Clock()
    pacer = RequestPacer(1200, clock=clock)  # 0.05 s at the limit
    spacing = 0.05 / (HEADROOM * DECREASE)  # the pace after the first cut

    assert pacer.rate_limited(1.0, started=clock.now) == pytest.approx(spacing)
    clock.now += 0.001
    # A second round in a row without a success: the probe doubles.
    assert pacer.rate_limited(1.0, started=clock.now) == pytest.approx(2 * 0.05 / (HEADROOM * DECREASE**2))
    for _ in range(10):
        clock.now += 0.001
        probed = pacer.rate_limited(1.0, started=clock.now)
    assert probed == 1.0  # never more than the server asked
    pacer.succeeded()  # the run of 429s is over: the next probe is short again
    clock.now += 0.001
    # "3" means more than 2 s: 2 s, plus a probe of one spacing at the pace now.
    assert pacer.rate_limited(3.0, started=clock.now) == pytest.approx(2 + 0.05 / pacer.fraction())
    assert pacer.rate_limited(0.35) == 0.35  # retry-after-ms: as given


def test_the_exact_pacer_and_no_pacing_keep_the_old_behaviour():
    clock = Clock()
    exact = RequestPacer(60_000, clock=clock, adaptive=False)
    starts = [exact.wait_turn() for _ in range(2)]
    assert starts[1] - starts[0] == pytest.approx(0.001)
    assert exact.rate_limited(1.0, started=clock.now) == 1.0 and exact.fraction() == 1.0

    unpaced = RequestPacer(None, clock=clock)
    assert unpaced.rate_limited(1.0, started=clock.now) == 1.0
    assert unpaced.paused_seconds == 1.0


# -- real time: the restart after a pause ------------------------------------------------------------


def test_the_restart_after_a_pause_is_spaced_not_a_burst():
    pacer = RequestPacer(1200)  # one start every 0.05 / HEADROOM s
    for _ in range(3):
        pacer.wait_turn()  # a job under way: turns already taken
    pacer.pause(0.3)
    paused_until = time.monotonic() + 0.3 - 0.01
    began: list[float] = []

    def worker() -> None:
        pacer.wait_turn()
        began.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(began) == 6
    assert min(began) >= paused_until  # nobody started during the pause
    # Six workers waiting out one pause: the last starts 5 spacings after it ends, not with the rest.
    assert max(began) >= paused_until + 5 * 0.05 / HEADROOM - 0.005


# -- against the stub's limiter shapes ---------------------------------------------------------------


def _posts(stub):
    return [r for r in stub.requests if r.method == "POST" and r.path.endswith("/embeddings")]


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ("rolling", {}),
        ("rolling", {"retry_after_ms": False}),
        ("fixed", {}),
        ("bucket", {"burst": 2}),
    ],
    ids=["rolling", "rolling-whole-seconds", "fixed", "bucket"],
)
def test_a_job_paced_at_the_limit_is_answered_once_per_batch_on_every_limiter_shape(
    ovh_stub, stub_connection, shape, options
):
    texts = [f"text {i} about pacing" for i in range(60)]
    ovh_stub.limit_rate(1200, window=1.0, shape=shape, **options)
    ovh_stub.latency = 0.02
    response = OVHCloudAIEndpointsHook().embed_texts(
        MODEL, texts, batch_size=2, max_concurrency=4, requests_per_minute=1200
    )

    assert [d["embedding"] for d in response["data"]] == [d["embedding"] for d in _embeddings(MODEL, texts)["data"]]
    answered = [r for r in _posts(ovh_stub) if r.status == 200]
    assert sorted(text for r in answered for text in r.body["input"]) == sorted(texts)  # each once
    # Paced 5 % under the limit, 30 requests cross at most one or two windows' worth of jitter.
    assert ovh_stub.counts()["429"] <= 3


def _run(stub, pacer: RequestPacer, count: int) -> dict[str, float]:
    """`count` one-text requests through the runner with `pacer`, against 20 requests/s over a
    rolling second whose 429s say Retry-After in whole seconds only; the stub's counts for them and
    the seconds everybody was paused."""
    stub.reset()
    stub.limit_rate(1200, window=1.0, retry_after_ms=False)
    send = OVHCloudAIEndpointsHook().embedding_sender(MODEL, {})
    results: list = []
    run_batches(
        [Batch(n, n, [f"text {n}"]) for n in range(count)],
        EMBEDDING,
        send,
        results.append,
        pacer=pacer,
        progress=JobProgress(count, logging.getLogger(__name__), title="Embedding", noun="texts"),
        max_concurrency=4,
    )
    assert sorted(r.batch.number for r in results) == list(range(count))  # each once, none lost
    assert all(len(r.values) == 1 for r in results)
    return {**stub.counts(), "paused": pacer.paused_seconds}


def test_over_the_limit_a_whole_second_retry_after_holds_the_exact_pacer_not_the_adaptive_one(
    ovh_stub, stub_connection
):
    # requests_per_minute at twice the endpoint's limit: both pacers are refused. The exact pacer
    # (before issue 19) pauses everybody the whole second each 429 says; the adaptive one probes
    # (a spacing, doubled per 429 in a row) and slows down, so it waits a fraction of that.
    exact = _run(ovh_stub, RequestPacer(2400, adaptive=False), 80)
    adaptive = _run(ovh_stub, RequestPacer(2400), 80)

    assert exact["429"] >= 3  # 80 requests at 40/s cannot fit in three windows of 20
    assert exact["paused"] >= exact["429"] - 0.01  # a whole second per 429
    assert adaptive["paused"] <= 0.5 * adaptive["429"]  # a probe per 429, not the whole second
    assert adaptive["paused"] < exact["paused"]


# -- shared by the processes of the host -------------------------------------------------------------

_SLOW_DOWN = """
import sys
from ovh_ai_dagfactory.jobs.host_pacing import host_pacer
pacer = host_pacer("http://endpoint/v1", sys.argv[1], 1200)
pacer.rate_limited(0.01, started=pacer.wait_turn())
print(pacer.fraction(), flush=True)
"""


def test_processes_of_one_host_share_the_adapted_pace(tmp_path, monkeypatch):
    monkeypatch.setenv(PACING_DIR_ENV, str(tmp_path / "pacing"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _SLOW_DOWN, MODEL], env=env, capture_output=True, text=True, timeout=60, check=True
    )

    assert float(done.stdout) == pytest.approx(HEADROOM * DECREASE)
    assert host_pacer("http://endpoint/v1", MODEL, 1200).fraction() == pytest.approx(HEADROOM * DECREASE)
    assert host_pacer("http://endpoint/v1", "another-model", 1200).fraction() == HEADROOM


def test_a_pace_file_of_the_first_version_is_read_and_stays_readable_by_it(tmp_path):
    (tmp_path / "pacing").mkdir()
    state = FileState("http://endpoint/v1", MODEL, tmp_path / "pacing")
    state.path.write_bytes(struct.pack("<dd", 2000.0, 1500.0))  # next start, paused until: 16 bytes

    with state.locked() as read:
        assert read[:2] == [2000.0, 1500.0]
        assert read[2] == HEADROOM  # a fresh pace
        read[0] = 2001.0
    # A process of the first version reads the first 16 bytes: the same two times.
    assert struct.unpack("<dd", state.path.read_bytes()[:16]) == (2001.0, 1500.0)

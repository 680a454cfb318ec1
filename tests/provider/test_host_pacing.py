"""Chat requests paced across the processes of one host (issue 10, "chat steps over many inputs"):
`requests_per_minute` on the chat operator takes turns from a file every process of the host shares
for one endpoint and model, and a 429 holds them all. Real processes for the sharing, real HTTP to
the stub and Airflow's own `dag.test()` for the operator.

Timing is judged by lower bounds only (a busy machine makes things later, never earlier): unshared
pacing would finish far sooner than the bounds asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.jobs.host_pacing import PACING_DIR_ENV, FileState, host_pacer, pacing_dir
from ovh_ai_dagfactory.jobs.pacing import ProcessState
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator
from provider.conftest import dag_id
from provider.shared import REPO_ROOT, TEST_TOKEN, run_dag, task_states

pytestmark = pytest.mark.usefixtures("stub_connection")
MODEL = "Meta-Llama-3_3-70B-Instruct"

# One process of a "host": takes `turns` turns of the pacer of (url, model), or pauses it.
_PROCESS = """
import json, sys, time
from ovh_ai_dagfactory.jobs.host_pacing import host_pacer
action, url, model, rpm, count = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
pacer = host_pacer(url, model, rpm)
print(type(pacer.state).__name__, flush=True)
if action == "pause":
    pacer.pause(count)
    print(json.dumps(time.time() + count), flush=True)
else:
    for _ in range(int(count)):
        pacer.wait_turn()
        print(json.dumps(time.time()), flush=True)
"""


@pytest.fixture
def pacing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pacing"
    monkeypatch.setenv(PACING_DIR_ENV, str(folder))
    return folder


def _start(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _PROCESS, *map(str, args)], env=env, stdout=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str]) -> tuple[str, list[float]]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    state, *times = out.splitlines()
    return state, [float(t) for t in times]


def test_processes_of_one_host_take_turns_from_one_pace(pacing_folder):
    # 1,200 a minute: one start every 0.05 s. Three processes of 4 requests each: 12 turns.
    started = time.time()
    processes = [_start("turns", "http://endpoint/v1", MODEL, 1200, 4) for _ in range(3)]
    results = [_finish(p) for p in processes]
    # A process reads the time after its turn; the turns began no earlier than `started`.
    last = max(t for _, times in results for t in times)

    assert {state for state, _ in results} == {"FileState"}
    assert last - started >= 11 * 0.05  # 12 turns, one every 0.05 s; alone, each would take 0.15 s
    assert len(list(pacing_folder.glob("*.pace"))) == 1


def test_another_model_or_endpoint_has_its_own_pace(pacing_folder):
    slow = host_pacer("http://endpoint/v1", MODEL, 6)  # one every 10 s
    slow.wait_turn()  # takes the first turn: the next one is 10 s away
    started = time.time()
    others = [_start("turns", "http://endpoint/v1", "BGE-M3", 6, 1), _start("turns", "http://other/v1", MODEL, 6, 1)]
    results = [_finish(p) for p in others]

    assert all(times[0] - started < 5 for _, times in results), "another model waited for this one's turn"
    assert len(list(pacing_folder.glob("*.pace"))) == 3


def test_a_429_pause_holds_every_process_of_the_host(pacing_folder):
    pausing = _start("pause", "http://endpoint/v1", MODEL, 6000, 0.6)
    _, (paused_until,) = _finish(pausing)
    _, (turn,) = _finish(_start("turns", "http://endpoint/v1", MODEL, 6000, 1))

    assert turn >= paused_until - 0.01  # time.time() of two processes: the same clock


def test_a_pacing_folder_others_can_write_to_is_not_trusted(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    monkeypatch.setenv(PACING_DIR_ENV, str(folder))

    assert pacing_dir() is None
    assert "not a folder of this user's that others cannot write to" in caplog.text
    assert isinstance(host_pacer("http://endpoint/v1", MODEL, 60).state, ProcessState)


def test_the_default_pacing_folder_is_the_users_own(monkeypatch):
    monkeypatch.delenv(PACING_DIR_ENV, raising=False)
    folder = pacing_dir()
    assert folder is not None and folder.name == f"ovh-ai-dagfactory-pacing-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert isinstance(host_pacer("http://endpoint/v1", MODEL, 60).state, FileState)


def _paced_chats(name: str, items: list[str], rpm: float | None) -> DAG:
    with DAG(dag_id=dag_id(name), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        OVHCloudAIEndpointsChatCompletionsOperator.partial(
            task_id="ask", model=MODEL, max_tokens=8, requests_per_minute=rpm
        ).expand(messages=[[{"role": "user", "content": item}] for item in items])
    return dag


def test_a_mapped_chat_task_is_paced_and_a_429_pauses_the_rest(airflow_db, ovh_stub, pacing_folder):
    # The first request is answered 429 with a 0.4 s Retry-After; 600 a minute is one every 0.1 s.
    ovh_stub.fail(429, body={"message": "Too many requests"}, headers={"retry-after-ms": "400"}, times=1)
    items = [f"item {i}" for i in range(4)]
    dag_run = run_dag(_paced_chats("paced_chat", items, rpm=600))

    assert task_states(dag_run) == {"ask": "success"}
    posts = [r for r in ovh_stub.requests if r.path.endswith("/chat/completions")]
    refused = [r for r in posts if r.status == 429]
    assert len(refused) == 1 and len(posts) == 5  # the refused item sent once more, by us: not by the SDK too
    later = sorted(r.at for r in posts if r is not refused[0])
    assert later[0] >= refused[0].answered_at + 0.35  # everybody waited out the Retry-After
    assert later[-1] - later[0] >= 3 * 0.1 * 0.9  # then one start every 0.1 s
    assert sorted(r.body["messages"][0]["content"] for r in posts if r.status == 200) == items


def test_without_requests_per_minute_a_chat_request_is_sent_as_before(airflow_db, ovh_stub, pacing_folder):
    ovh_stub.fail(429, body={"message": "Too many requests"}, headers={"retry-after-ms": "100"}, times=1)
    dag_run = run_dag(_paced_chats("unpaced_chat", ["only item"], rpm=None))

    assert task_states(dag_run) == {"ask": "success"}
    assert [r.status for r in ovh_stub.requests] == [429, 200]  # the SDK's own retry
    assert not list(pacing_folder.glob("*.pace"))


def test_a_lasting_429_fails_the_paced_request_naming_it_and_the_setting(ovh_stub, pacing_folder):
    from ovh_ai_dagfactory.calls.errors import RateLimitError
    from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

    ovh_stub.fail(429, body={"message": "slow down"}, headers={"retry-after": "300"}, times=1)
    with pytest.raises(RateLimitError) as caught:
        OVHCloudAIEndpointsHook().paced_chat_completion(
            600, model=MODEL, messages=[{"role": "user", "content": "hello"}]
        )
    message = str(caught.value)
    assert f"[chat completion of {MODEL}: the server asked to wait 300 s, over max_retry_after; " in message
    assert "lower requests_per_minute, or max_parallel of the step]" in message
    assert TEST_TOKEN not in message

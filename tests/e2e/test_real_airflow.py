"""Issue 4, "Tests", second bullet: the example pipelines in a real Airflow; and issue 9's 50-item
fan-out run end to end.

A DAG folder holds the two-line loader file, a copy of `pipelines/*.yaml`, one broken pipeline and
the 50-item fan-out pipeline. Real Airflow services (see `airflow_services.py`; started once for
this module, LocalExecutor on both lines) parse it; the tests then work only through the REST API,
as a user or a CI job would:

- every valid pipeline is listed as a DAG; the broken file's error is visible through the API with
  its FILE:LINE:COL text; the loader file itself has no import error (one broken file hides nothing);
- runs triggered over REST succeed on the scheduler's executor, with the chat endpoint served by
  llmock (a real HTTP server on 127.0.0.1 in this process);
- XCom holds the responses; the `steps.<id>.content` reference reached the next step; Airflow
  templating (`var.value`, `ds`) was rendered before the request left the worker;
- llmock's journal shows the requests the workers sent; the API token appears in no DAG detail
  and in no log;
- the fan-out (`for_each` over a typed array param of 50 items, `max_parallel: 3`, then one
  embedding step reading `steps.summarize.contents`): the run succeeds, its items task and 50
  mapped instances (map_index 0..49) succeed, no more than 3 instances ran at once (their recorded
  start/end dates) though some did run side by side, each instance sent its own item and index,
  its XCom holds that answer, and the one embedding request got the 50 answers in item order and
  returned 50 vectors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from e2e.airflow_services import (
    BROKEN_DAG_ID,
    BROKEN_ERROR,
    BROKEN_PIPELINE,
    EXAMPLES,
    AirflowServices,
    Deadline,
    copy_examples,
    example_dag_ids,
)

pytestmark = pytest.mark.e2e

TOKEN = "sk-test-e2e-7d41c0a9b3f25e68"  # fake; asserted never to leak
CONN_ID = "ovh_ai_endpoints_default"
LLM_MODEL_VAR = "Mistral-Nemo-Instruct-2407"  # the Airflow Variable `llm_model`, set via env
REPORT_DATE = datetime(2024, 6, 1, tzinfo=timezone.utc)

STARTUP_BUDGET = 120  # db migrate + services healthy, once per module

#: Issue 9's "50-item fan-out run end to end": a typed array param of 50 items, a chat step mapped
#: over it through its `<step>__for_each` items task (a template for_each), at most MAX_PARALLEL
#: items at a time, then one embedding step reading the 50 answers as a list.
FAN_OUT_DAG_ID = "e2e_fan_out_50"
FAN_OUT_ITEMS = [f"doc-{i:02d}" for i in range(50)]
FAN_OUT_BUDGET = 300  # seconds, services already up; it takes 60-90 s on 2 cores
MAX_PARALLEL = 3  # below the harness's core.parallelism (4), so that a missing bound can show
FAN_OUT_PIPELINE = f"""\
dag_id: {FAN_OUT_DAG_ID}
schedule: null
start_date: 2024-01-01
params:
  documents:
    type: array
    default: {json.dumps(FAN_OUT_ITEMS)}
    description: 50 texts, one mapped task instance each
steps:
  summarize:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    for_each: "{{{{ params.documents }}}}"
    max_parallel: {MAX_PARALLEL}
    messages:
      - {{role: user, content: "Summarize {{{{ item }}}} (item {{{{ item_index }}}})."}}
  embed:
    type: embedding
    model: BGE-M3
    input: "{{{{ steps.summarize.contents }}}}"
"""


def _dag_folder(root: Path) -> Path:
    dags = root / "dags"
    pipelines = dags / "pipelines"
    copy_examples(pipelines)
    (pipelines / "broken_pipeline.yaml").write_text(BROKEN_PIPELINE)
    (pipelines / "e2e_fan_out_50.yaml").write_text(FAN_OUT_PIPELINE)
    # The loader file as the README documents it. The comment is load-bearing: Airflow's safe mode
    # skips a .py file that lacks the words "airflow" and "dag", and the two code lines alone have
    # no "airflow" (this test fails with no DAG listed without it).
    (dags / "ovh_pipelines.py").write_text(
        "# airflow DAG loader: one DAG per pipeline file\n"
        "from ovh_ai_dagfactory import load_pipelines\n"
        f"load_pipelines({str(pipelines)!r}, globals())\n"
    )
    return dags


def _journal(llmock: Any) -> list[dict[str, Any]]:
    return [{"path": r.path, "status": r.status, "model": r.model, "body": r.body} for r in llmock.requests]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, llmock_server: Any) -> Iterator[AirflowServices]:
    """One real Airflow for this module's tests (start-up is most of an e2e test's time). Its
    connection points at the session's llmock server; each test gets a fresh journal through the
    `llmock` fixture."""
    dags = _dag_folder(tmp_path_factory.mktemp("real-airflow"))
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": llmock_server.base_url("openai"), "password": TOKEN}
        ),
        "AIRFLOW_VAR_LLM_MODEL": LLM_MODEL_VAR,
    }
    # LocalExecutor on 2.11 too (SQLite check lifted, see AirflowServices): the 50 items then take
    # ~80 s there instead of ~250 s with the SequentialExecutor, and max_parallel shows.
    services = AirflowServices(
        dags, extra_env=env, keep_home=True, deadline=Deadline(STARTUP_BUDGET), local_executor_on_2x=True
    )
    try:
        with services:
            yield services
    finally:
        print(f"\ne2e real Airflow {services.major}.x: start {services.timings}, {services.memory.summary()}")
        shutil.rmtree(services.home, ignore_errors=True)


def test_example_pipelines_in_a_real_airflow(airflow: AirflowServices, llmock: Any) -> None:
    deadline = Deadline(120)
    expected = example_dag_ids()
    assert {"chat_completion_example", "summarize_then_embed", "templated_example"} <= set(expected)
    try:
        _scenario(airflow, llmock, deadline, expected)
    finally:
        print(f"\ne2e example pipelines (Airflow {airflow.major}.x): wall {deadline.elapsed():.1f}s")
    _assert_token_in_no_log(airflow)


def _assert_token_in_no_log(services: AirflowServices) -> None:
    assert TOKEN not in _all_logs(services.home), "the API token leaked into a service or task log"


def _scenario(services: AirflowServices, llmock: Any, deadline: Deadline, expected: dict[str, str]) -> None:
    api = services.api

    # 1. Parsing: every valid pipeline listed, the broken one reported with FILE:LINE:COL.
    listed, errors = services.wait_for_dags(expected, deadline, import_error_files={"broken_pipeline.yaml"})
    by_file = {Path(e["filename"]).name: e for e in errors}
    assert BROKEN_ERROR in by_file["broken_pipeline.yaml"]["stack_trace"], by_file
    assert "did you mean 'messages'" in by_file["broken_pipeline.yaml"]["stack_trace"]
    assert "ovh_pipelines.py" not in by_file, f"the loader file itself failed: {by_file['ovh_pipelines.py']}"
    assert BROKEN_DAG_ID not in listed
    for dag_id in expected:
        assert not listed[dag_id].get("has_import_errors"), listed[dag_id]
        details = api.dag_details(dag_id)
        assert TOKEN not in json.dumps(details), f"token leaked into {dag_id} details"

    # 2. Runs triggered over REST (all at once: the executor may run them in parallel).
    runs = {
        "chat_completion_example": api.trigger("chat_completion_example"),
        "summarize_then_embed": api.trigger("summarize_then_embed"),
        "templated_example": api.trigger("templated_example", logical_date=REPORT_DATE),
        "classify_tickets": api.trigger("classify_tickets"),
    }
    for dag_id, run in runs.items():
        final = services.wait_for_run(dag_id, run["dag_run_id"], deadline)
        assert final["state"] == "success", (
            f"{dag_id} run {final['state']}; tasks "
            f"{[(t['task_id'], t['state']) for t in api.task_instances(dag_id, run['dag_run_id'])]}\n" + services.logs()
        )

    def xcom(dag_id: str, task_id: str) -> Any:
        return api.xcom(dag_id, runs[dag_id]["dag_run_id"], task_id)

    journal = _journal(llmock)
    chats = [r for r in journal if r["path"].endswith("/chat/completions")]
    embeddings = [r for r in journal if r["path"].endswith("/embeddings")]
    assert all(r["status"] == 200 for r in journal), journal

    # 3. basic chat: XCom holds the chat response for the model the pipeline asked for.
    answer = xcom("chat_completion_example", "generate_response")
    assert answer["model"] == "Meta-Llama-3_3-70B-Instruct", answer
    assert answer["choices"][0]["message"]["content"].strip(), answer
    basic = [r for r in chats if r["body"]["messages"][-1]["content"] == "Explain machine learning in simple terms."]
    assert len(basic) == 1, chats
    assert basic[0]["body"]["model"] == "Meta-Llama-3_3-70B-Instruct"
    assert basic[0]["body"]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}

    # 4. summarize_then_embed: the embedding step embedded what the chat step answered.
    summary = xcom("summarize_then_embed", "summarize")
    summary_text = summary["choices"][0]["message"]["content"]
    assert summary_text.strip(), summary
    vectors = xcom("summarize_then_embed", "embed_summary")
    assert vectors["data"] and vectors["data"][0]["embedding"], vectors
    assert [r["body"]["input"] for r in embeddings] == [summary_text], embeddings
    assert embeddings[0]["body"]["model"] == "BGE-M3"

    # 5. templated_example: `{{ var.value.llm_model }}` and `{{ ds }}` rendered by Airflow.
    report = xcom("templated_example", "analyze_daily_data")
    assert report["model"] == LLM_MODEL_VAR, report
    templated = [r for r in chats if r["body"]["model"] == LLM_MODEL_VAR]
    assert len(templated) == 1, chats
    assert templated[0]["body"]["messages"][-1]["content"] == "Generate a report summary for 2024-06-01"

    # 6. classify_tickets (chat at volume): one task sent one structured request per ticket of the
    # file next to the pipeline, and the next step read the parsed answers.
    tickets = [json.loads(line) for line in (EXAMPLES / "data" / "tickets.jsonl").read_text().splitlines()]
    rows = xcom("classify_tickets", "classify")["data"]
    assert [row["id"] for row in rows] == [ticket["id"] for ticket in tickets], rows
    assert all(row["error"] is None and "category" in row["json"] for row in rows), rows
    per_ticket = [r for r in chats if r["body"]["messages"][-1]["content"].startswith("Ticket T-")]
    assert sorted(r["body"]["messages"][-1]["content"] for r in per_ticket) == sorted(
        f"Ticket {ticket['id']}: {ticket['text']}" for ticket in tickets
    )
    tasks = {t["task_id"] for t in api.task_instances("classify_tickets", runs["classify_tickets"]["dag_run_id"])}
    assert tasks == {"classify", "count_bugs"}, tasks  # the tickets ran inside one task, none mapped

    # Exactly the requests of the four runs: 3 chats + 1 embedding, a chat per ticket and the
    # tickets' summary; no retry, no stray call.
    assert (len(chats), len(embeddings)) == (3 + len(tickets) + 1, 1), journal
    # Authenticated with the connection's token, not llmock's dummy OPENAI_API_KEY.
    # (llmock does not journal headers; the token-in-logs check is in the caller.)


def _all_logs(home: Path) -> str:
    parts = []
    for path in sorted(home.rglob("*.log")):
        try:
            parts.append(path.read_text(errors="replace"))
        except OSError:
            pass
    return "\n".join(parts)


def test_a_50_item_fan_out_in_a_real_airflow(airflow: AirflowServices, llmock: Any, llmock_server: Any) -> None:
    """The step mapped over 50 items: 50 task instances (map_index 0..49) all succeed under the
    real scheduler, never more than `max_parallel` of them running at once, each sent its own item,
    and the embedding step got the 50 answers in item order and returned 50 vectors."""
    deadline = Deadline(FAN_OUT_BUDGET)
    # Echo answers ("Hello! You said: <prompt>"): each answer names its item, so order is checkable.
    state = llmock_server.app.state
    state.mock_response_settings = replace(state.mock_response_settings, response_style="echo")
    api = airflow.api
    try:
        airflow.wait_for_dags({FAN_OUT_DAG_ID}, deadline)
        run_id = api.trigger(FAN_OUT_DAG_ID)["dag_run_id"]
        final = airflow.wait_for_run(FAN_OUT_DAG_ID, run_id, deadline)
        tis = api.task_instances(FAN_OUT_DAG_ID, run_id)
        assert final["state"] == "success", (
            f"fan-out run {final['state']}; tasks {sorted((t['task_id'], t['map_index'], t['state']) for t in tis)}\n"
            + airflow.logs()
        )
        _check_fan_out(airflow, llmock, run_id, tis)
    finally:
        print(f"\ne2e 50-item fan-out (Airflow {airflow.major}.x): wall {deadline.elapsed():.1f}s")
    _assert_token_in_no_log(airflow)


def _check_fan_out(services: AirflowServices, llmock: Any, run_id: str, tis: list[dict[str, Any]]) -> None:
    api = services.api
    n = len(FAN_OUT_ITEMS)

    # 1. Task instances: the items task, 50 mapped instances of the step, the embedding step.
    by_task: dict[str, dict[int, dict[str, Any]]] = {}
    for ti in tis:
        by_task.setdefault(ti["task_id"], {})[ti["map_index"]] = ti
    assert set(by_task) == {"summarize__for_each", "summarize", "embed"}, sorted(by_task)
    assert sorted(by_task["summarize"]) == list(range(n)), sorted(by_task["summarize"])
    assert {ti["state"] for ti in by_task["summarize"].values()} == {"success"}
    assert [ti["state"] for ti in by_task["summarize__for_each"].values()] == ["success"]
    assert [(i, ti["state"]) for i, ti in by_task["embed"].items()] == [(-1, "success")]
    assert api.xcom(FAN_OUT_DAG_ID, run_id, "summarize__for_each") == FAN_OUT_ITEMS

    # 2. max_parallel: the running intervals of the mapped instances (start_date..end_date, as
    # Airflow recorded them) never overlap more than MAX_PARALLEL deep. The executor has 4 slots,
    # so without the bound 4 could run at once.
    peak = _peak_overlap(by_task["summarize"].values())
    assert peak <= MAX_PARALLEL, f"{peak} mapped instances ran at once; max_parallel is {MAX_PARALLEL}"
    # The items did run side by side (LocalExecutor, 4 slots), so the bound was exercised.
    assert peak >= 2, f"the 50 items never overlapped (peak {peak}): the max_parallel check proved nothing"

    # 3. Each instance sent its own item and index, and its XCom holds that answer.
    journal = llmock.requests
    assert all(r.status == 200 for r in journal), [(r.path, r.status) for r in journal]
    chats = [r for r in journal if r.path.endswith("/chat/completions")]
    embeddings = [r for r in journal if r.path.endswith("/embeddings")]
    prompts = sorted(r.body["messages"][-1]["content"] for r in chats)
    expected_prompts = [f"Summarize {item} (item {i})." for i, item in enumerate(FAN_OUT_ITEMS)]
    assert prompts == sorted(expected_prompts), prompts
    answers = []
    for i, prompt in enumerate(expected_prompts):
        response = api.xcom(FAN_OUT_DAG_ID, run_id, "summarize", map_index=i)
        answer = response["choices"][0]["message"]["content"]
        assert prompt in answer, f"map_index {i}: answer {answer!r} is not about {prompt!r}"
        answers.append(answer)

    # 4. One embedding request with the 50 answers in item order; its XCom holds 50 vectors.
    assert len(embeddings) == 1, [r.body for r in embeddings]
    assert embeddings[0].body["model"] == "BGE-M3"
    assert embeddings[0].body["input"] == answers, embeddings[0].body["input"]
    vectors = api.xcom(FAN_OUT_DAG_ID, run_id, "embed")
    assert [d["index"] for d in vectors["data"]] == list(range(n)), vectors["data"]
    assert all(len(d["embedding"]) > 0 for d in vectors["data"])


def _peak_overlap(tis: Iterable[dict[str, Any]]) -> int:
    """The most task instances running at one instant, from their start/end dates (an end at the
    very instant another starts is not an overlap)."""
    events = []
    for ti in tis:
        start, end = ti["start_date"], ti["end_date"]
        assert start and end, ti
        events.append((datetime.fromisoformat(start), 1))
        events.append((datetime.fromisoformat(end), -1))
    peak = running = 0
    for _, step in sorted(events):  # at equal times the end (-1) sorts before the start (+1)
        running += step
        peak = max(peak, running)
    return peak

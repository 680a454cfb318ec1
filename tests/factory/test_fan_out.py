"""`for_each`: a step runs once per item as an Airflow mapped task, later steps read lists in item
order, and whole-expression templates give native values — run through Airflow against our stub."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import round_trip, run_dag, serialized, xcom_value
from ovh_stub import OVHStub

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec import parse_pipeline_text

CHAT = "Meta-Llama-3_3-70B-Instruct"

FAN_OUT = """\
schedule: null
params:
  documents:
    type: array
    default: ["Airflow schedules workflows.", "Embeddings map text to vectors.", "Queues decouple work."]
steps:
  explain:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    for_each: "{{ params.documents }}"
    max_parallel: 2
    messages:
      - {role: user, content: "Explain {{ item }} (item {{ item_index }})"}
  embed:
    type: embedding
    model: BGE-M3
    input: "{{ steps.explain.contents }}"
  count:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages:
      - {role: user, content: "{{ steps.explain.responses | length }} answers, {{ steps.embed.embeddings | length }} vectors"}
"""


def _dag(text: str, name: str = "fan_out") -> Any:
    return build_dag(parse_pipeline_text(text, f"/pipelines/{name}.yaml"))


def _states(dag_run: Any) -> dict[str, list[str]]:
    """task id → the states of its task instances, by map index (one entry for a plain task)."""
    states: dict[str, list[tuple[int, str]]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append((ti.map_index, str(ti.state)))
    return {task_id: [state for _, state in sorted(found)] for task_id, found in states.items()}


def _bodies(stub: OVHStub, route: str) -> list[dict[str, Any]]:
    return [request.body for request in stub.requests if request.path.endswith(route)]


def test_a_step_runs_once_per_item_and_later_steps_read_lists_in_item_order(airflow_db, stub):
    dag_run = run_dag(_dag(FAN_OUT))
    states = _states(dag_run)
    assert states == {
        "explain__for_each": ["success"],
        "explain": ["success", "success", "success"],
        "embed": ["success"],
        "count": ["success"],
    }, states
    prompts = sorted(body["messages"][0]["content"] for body in _bodies(stub, "/chat/completions"))
    assert prompts[:3] == [
        "3 answers, 3 vectors",
        "Explain Airflow schedules workflows. (item 0)",
        "Explain Embeddings map text to vectors. (item 1)",
    ]
    assert prompts[3] == "Explain Queues decouple work. (item 2)"
    # One embedding request with the list of answers (native value), in item order whatever the
    # order the items ran in.
    [embedding] = _bodies(stub, "/embeddings")
    assert embedding["input"] == [
        f"Echo from {CHAT}: Explain Airflow schedules workflows. (item 0)",
        f"Echo from {CHAT}: Explain Embeddings map text to vectors. (item 1)",
        f"Echo from {CHAT}: Explain Queues decouple work. (item 2)",
    ]
    assert xcom_value(dag_run, "explain__for_each") == [
        "Airflow schedules workflows.",
        "Embeddings map text to vectors.",
        "Queues decouple work.",
    ]


def test_the_mapped_task_is_an_airflow_mapped_task_and_survives_serialization():
    dag = _dag(FAN_OUT, "serialized")
    explain = dag.get_task("explain")
    assert type(explain).__name__ == "MappedOperator"
    assert explain.upstream_task_ids == {"explain__for_each"}
    assert dag.get_task("embed").upstream_task_ids == {"explain"}
    assert dag.get_task("embed").trigger_rule == "none_failed"
    restored = round_trip(dag)
    mapped = restored.get_task("explain")
    assert mapped.partial_kwargs["max_active_tis_per_dagrun"] == 2
    assert mapped.partial_kwargs["mapped_steps"] in (["explain"], ("explain",))
    assert mapped.upstream_task_ids == {"explain__for_each"}
    assert mapped.operator_name == "OVHCloudAIEndpointsChatCompletionsOperator"
    stored = [t["__var"] for t in serialized(dag)["dag"]["tasks"] if t["__var"]["task_id"] == "explain"][0]
    assert stored["_is_mapped"] is True and "item" in json.dumps(stored["expand_input"])
    assert restored.get_task("embed").trigger_rule == "none_failed"


def test_a_literal_list_is_expanded_as_it_is_without_an_items_task(airflow_db, stub):
    dag = _dag(
        """\
        schedule: null
        steps:
          label:
            type: chat
            model: Meta-Llama-3_3-70B-Instruct
            for_each: [{name: a, text: first}, {name: b, text: second}]
            messages: [{role: user, content: "{{ item.name }}={{ item.text }}"}]
        """.replace("        ", "")
    )
    assert set(dag.task_ids) == {"label"}
    dag_run = run_dag(dag)
    assert _states(dag_run) == {"label": ["success", "success"]}
    assert sorted(body["messages"][0]["content"] for body in _bodies(stub, "/chat/completions")) == [
        "a=first",
        "b=second",
    ]


def test_requests_per_minute_paces_the_items_of_a_chat_step(airflow_db, stub, tmp_path, monkeypatch):
    monkeypatch.setenv("OVH_AI_DAGFACTORY_PACING_DIR", str(tmp_path / "pacing"))
    dag = _dag(
        """\
        schedule: null
        steps:
          label:
            type: chat
            model: Meta-Llama-3_3-70B-Instruct
            for_each: [one, two, three, four]
            requests_per_minute: 300
            messages: [{role: user, content: "{{ item }}"}]
        """.replace("        ", "")
    )
    assert dag.get_task("label").partial_kwargs["requests_per_minute"] == 300
    dag_run = run_dag(dag)
    assert _states(dag_run) == {"label": ["success"] * 4}
    starts = sorted(r.at for r in stub.requests if r.path.endswith("/chat/completions"))
    # 300 a minute: one start every 0.2 s. Judged from the second arrival: the first item's process
    # may still be warming up after its turn (importing the SDK's resources), which only delays it.
    assert len(starts) == 4 and starts[-1] - starts[1] >= 2 * 0.2 * 0.9
    assert len(list((tmp_path / "pacing").glob("*.pace"))) == 1  # the host's pace for this endpoint and model


EMPTY = """\
schedule: null
params:
  documents: {type: array, default: []}
steps:
  explain:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    for_each: "{{ params.documents }}"
    messages: [{role: user, content: "Explain {{ item }}"}]
  embed:
    type: embedding
    model: BGE-M3
    input: "{{ steps.explain.contents }}"
"""


def test_an_empty_list_runs_no_item_and_later_steps_see_an_empty_list(airflow_db, stub):
    dag_run = run_dag(_dag(EMPTY, "empty"))
    states = _states(dag_run)
    assert states["explain__for_each"] == ["success"] and states["embed"] == ["success"], states
    assert states["explain"] == ["skipped"]  # Airflow's state for a task mapped over nothing
    assert stub.requests == []  # no chat call, and no embedding call for no text
    assert xcom_value(dag_run, "embed")["data"] == []


def test_a_for_each_that_gives_no_list_fails_clearly_without_retrying(airflow_db, stub):
    text = EMPTY.replace("{type: array, default: []}", "not a list").replace(
        "  explain:\n", "  explain:\n    retries: 3\n"
    )
    dag_run = run_dag(_dag(text, "not_a_list"))
    states = _states(dag_run)
    assert states["explain__for_each"] == ["failed"] and states["embed"] == ["upstream_failed"], states
    [items] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "explain__for_each"]
    assert items.try_number == 1  # AirflowFailException: a retry would render the same value
    assert stub.requests == []


def test_items_task_message_names_the_step_and_what_it_got():
    from ovh_ai_dagfactory.compat import AirflowFailException
    from ovh_ai_dagfactory.factory.step_operators import ForEachItemsOperator

    task = ForEachItemsOperator(task_id="x__for_each", for_each="a, b", step_id="x", step_kinds={"x": "chat"})
    with pytest.raises(AirflowFailException, match=r"for_each of step 'x' gave str 'a, b', not a list"):
        task.execute({})


STRUCTURED_FAN_OUT = """\
schedule: null
steps:
  classify:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    for_each: ["the export crashes", "add dark mode"]
    output_schema:
      type: object
      properties: {label: {enum: [bug, feature]}}
      required: [label]
    messages: [{role: user, content: "Classify: {{ item }}"}]
  vectors:
    type: embedding
    model: BGE-M3
    for_each: ["one", "two", "three"]
    input: "{{ item }}"
  report:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages:
      - role: user
        content: "{{ steps.classify.jsons | map(attribute='label') | join(',') }} / {{ steps.vectors.embeddings | length }}"
"""


def test_structured_answers_and_vectors_of_a_fan_out_come_back_as_lists(airflow_db, stub):
    dag_run = run_dag(_dag(STRUCTURED_FAN_OUT, "structured_fan_out"))
    assert _states(dag_run)["report"] == ["success"], _states(dag_run)
    structured = [body for body in _bodies(stub, "/chat/completions") if "response_format" in body]
    assert len(structured) == 2 and all(b["response_format"]["json_schema"]["name"] == "classify" for b in structured)
    report = [body for body in _bodies(stub, "/chat/completions") if "response_format" not in body]
    assert report[0]["messages"][0]["content"] == "bug,bug / 3"  # the stub answers an enum's first value
    assert sorted(body["input"] for body in _bodies(stub, "/embeddings")) == ["one", "three", "two"]


NATIVE = """\
schedule: null
params:
  documents: {type: array, default: ["first text", "second text"]}
  count: 7
steps:
  embed:
    type: embedding
    model: BGE-M3
    input: "{{ params.documents }}"
  embed_text:
    type: embedding
    model: BGE-M3
    input: "Documents: {{ params.documents }}"
  ask:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: "{{ params.count }}"}]
"""


def test_a_whole_expression_gives_its_native_value_and_text_stays_text(airflow_db, stub):
    dag_run = run_dag(_dag(NATIVE, "native"))
    assert set(state for states in _states(dag_run).values() for state in states) == {"success"}
    inputs = [body["input"] for body in _bodies(stub, "/embeddings")]
    assert ["first text", "second text"] in inputs  # two texts embedded, not one "['first text', ...]"
    assert "Documents: ['first text', 'second text']" in inputs
    assert len(xcom_value(dag_run, "embed")["data"]) == 2
    # A message content stays text even when it is one expression giving a number.
    [ask] = _bodies(stub, "/chat/completions")
    assert ask["messages"][0]["content"] == "7"


def test_an_input_that_gives_neither_text_nor_texts_fails_clearly(airflow_db, stub):
    text = NATIVE.replace('input: "{{ params.documents }}"', "input: \"{{ {'a': 1} }}\"")
    dag_run = run_dag(_dag(text, "bad_input"))
    assert _states(dag_run)["embed"] == ["failed"]
    assert all(body["input"] != {"a": 1} for body in _bodies(stub, "/embeddings"))


@pytest.mark.parametrize("task_id", ["explain", "explain__for_each"])
def test_a_worker_running_one_item_builds_only_its_dag(tmp_path, monkeypatch, task_id):
    """What a worker does before running a mapped task instance (or the items task): the parsing
    context names the DAG, and the loader builds that DAG only."""
    from conftest import REPO_ROOT

    from ovh_ai_dagfactory import load_pipelines

    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name in ("explain_topics.yaml", "summarize_then_embed.yaml", "classify_ticket.yaml"):
        (folder / name).write_bytes((REPO_ROOT / "pipelines" / name).read_bytes())
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "explain_topics")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", task_id)
    namespace: dict[str, Any] = {}
    result = load_pipelines(folder, namespace, cache_dir=False)
    assert result.dag_ids == ["explain_topics"] and not result.rejected
    [dag] = [value for value in namespace.values() if getattr(value, "dag_id", None) == "explain_topics"]
    assert type(dag.get_task("explain")).__name__ == "MappedOperator"
    assert dag.get_task("explain").partial_kwargs["step_kinds"] == {
        "extract": "chat",
        "explain": "chat",
        "embed": "embedding",
    }

"""`output_schema` on the chat operator (issue #9), over real HTTP to the OVH-like stub, which
answers a `json_schema` response_format with JSON made for the schema, or broken / mismatching JSON
when told to: the request it receives, the answer's check (`StructuredOutputError`, retried by
Airflow), what reaches XCom, `results.chat_json`, and the DAG's serialization.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from ovh_stub import BROKEN_JSON, ECHO_AUTHORIZATION

from ovh_ai_dagfactory.calls.errors import InvalidRequestError, NoContentError, StructuredOutputError
from ovh_ai_dagfactory.calls.results import chat_json
from ovh_ai_dagfactory.compat import DAG, AirflowFailException
from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator, schema_name
from provider.conftest import dag_id
from provider.shared import TEST_TOKEN, round_trip, run_dag, serialized, task_states, xcom_value

pytestmark = pytest.mark.usefixtures("stub_connection")

HI = [{"role": "user", "content": "List the topics of: Airflow schedules workflows."}]
TOPICS = {
    "type": "object",
    "properties": {
        "topics": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number"},
        "label": {"enum": ["tech", "other"]},
    },
    "required": ["topics", "confidence", "label"],
    "additionalProperties": False,
}
EXPECTED = {"topics": ["example"], "confidence": 1, "label": "tech"}  # what the stub makes for TOPICS


def _posts(stub):
    return [r for r in stub.requests if r.method == "POST" and r.path.endswith("/chat/completions")]


def _chat(task_id="extract", model="gpt-oss-120b", **kwargs):
    return OVHCloudAIEndpointsChatCompletionsOperator(
        task_id=task_id, model=model, messages=HI, output_schema=TOPICS, **kwargs
    )


def _logs(capfd, caplog):
    out, err = capfd.readouterr()
    return out + err + caplog.text


# -- through Airflow ---------------------------------------------------------------------------


def test_a_valid_structured_answer_succeeds_and_the_request_carries_the_strict_json_schema(airflow_db, ovh_stub):
    with DAG(dag_id=dag_id("structured_valid"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _chat("extract.topics-v1", retries=1, retry_delay=timedelta(seconds=0))
        OVHCloudAIEndpointsChatCompletionsOperator(
            task_id="free_text", model="Mixtral-8x22B-Instruct-v0.1", messages=HI
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"extract.topics-v1": "success", "free_text": "success"}
    by_model = {r.body["model"]: r.body for r in _posts(ovh_stub)}
    assert len(_posts(ovh_stub)) == 2
    assert by_model["gpt-oss-120b"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "extract_topics-v1", "schema": TOPICS, "strict": True},
    }
    assert "response_format" not in by_model["Mixtral-8x22B-Instruct-v0.1"]  # only where asked for
    # XCom keeps the whole response (steps.<id>.content is unchanged); chat_json reads the object.
    pushed = xcom_value(dag_run, "extract.topics-v1")
    assert pushed["object"] == "chat.completion"
    assert json.loads(pushed["choices"][0]["message"]["content"]) == EXPECTED
    assert chat_json(pushed, TOPICS) == EXPECTED


def test_invalid_json_fails_the_try_and_airflow_retries_it(airflow_db, ovh_stub, capfd, caplog):
    # gpt-oss-120b answers broken JSON once, then valid JSON; Mixtral always answers broken JSON.
    ovh_stub.structured_output("invalid", times=1, model="gpt-oss-120b")
    ovh_stub.structured_output("invalid", times=5, model="Mixtral-8x22B-Instruct-v0.1")
    with DAG(dag_id=dag_id("structured_retry"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _chat("recovers", "gpt-oss-120b", retries=1, retry_delay=timedelta(seconds=0))
        _chat("keeps_failing", "Mixtral-8x22B-Instruct-v0.1", retries=1, retry_delay=timedelta(seconds=0))
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"recovers": "success", "keeps_failing": "failed"}
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries == {"recovers": 2, "keeps_failing": 2}  # not fatal: each task used its retry
    models = [r.body["model"] for r in _posts(ovh_stub)]
    assert sorted(models) == ["Mixtral-8x22B-Instruct-v0.1"] * 2 + ["gpt-oss-120b"] * 2
    assert chat_json(xcom_value(dag_run, "recovers"), TOPICS) == EXPECTED
    assert xcom_value(dag_run, "keeps_failing") is None  # a broken answer is never pushed

    logs = _logs(capfd, caplog)
    assert "StructuredOutputError" in logs
    assert (
        "Structured output: the answer of model 'Mixtral-8x22B-Instruct-v0.1' (response id 'chatcmpl-stub') "
        "is not valid JSON at $ (Unterminated string starting at: line 1 column 12)"
    ) in logs
    assert f"near the error: {BROKEN_JSON!r}" in logs


# -- through execute() (the same stages, no scheduler) ----------------------------------------


def test_a_mismatch_names_the_json_path_what_the_schema_wanted_and_an_excerpt(ovh_stub):
    ovh_stub.structured_output("mismatch")
    with pytest.raises(StructuredOutputError) as caught:
        _chat().execute({})
    message = str(caught.value)
    assert message.startswith(
        "Structured output: the answer of model 'gpt-oss-120b' (response id 'chatcmpl-stub') does not match "
        "output_schema at $.topics[0]: ['not', 'a', 'scalar'] is not of type 'string' "
        '(the schema wants type "string"); answer (70 chars): '
        """'{"topics": [["not", "a", "scalar"]], "confidence": 1, "label": "tech"}'."""
    ), message
    assert "retries (if any) ask the model again" in message
    assert (caught.value.json_path, caught.value.finish_reason) == ("$.topics[0]", "stop")
    assert not isinstance(caught.value, AirflowFailException)  # the task's retries apply


def test_a_missing_property_and_an_enum_are_named(ovh_stub):
    ovh_stub.respond(200, body=_answer('{"topics": [], "confidence": 0.5}'))
    with pytest.raises(StructuredOutputError, match=r"at \$: 'label' is a required property \(the schema wants "):
        _chat().execute({})
    ovh_stub.respond(200, body=_answer('{"topics": [], "confidence": 0.5, "label": "sports"}'))
    with pytest.raises(StructuredOutputError) as caught:
        _chat().execute({})
    assert caught.value.json_path == "$.label"
    assert """(the schema wants enum ["tech", "other"])""" in str(caught.value)


def test_the_excerpt_is_one_line_of_at_most_200_characters_and_never_the_token(ovh_stub):
    chatty = "Sure!\n\nHere are the topics you asked for, " + "very " * 80 + f"carefully. {ECHO_AUTHORIZATION}"
    ovh_stub.respond(200, body=_answer(chatty))
    with pytest.raises(StructuredOutputError) as caught:
        _chat().execute({})
    message = str(caught.value)
    excerpt = message.split("near the error: ", 1)[1].split("'. ", 1)[0].lstrip("'")
    assert excerpt.startswith("Sure! Here are the topics you asked for, very very") and excerpt.endswith("…")
    assert len(excerpt) == 200 and "\n" not in message
    assert f"answer ({len(chatty) - len(ECHO_AUTHORIZATION) + len('Bearer ***')} chars)" in message

    # The end of the same answer (token echoed back) is quoted redacted: near a late error.
    ovh_stub.respond(200, body=_answer('{"topics": ["' + "x" * 300 + f'", {ECHO_AUTHORIZATION}]}}'))
    with pytest.raises(StructuredOutputError) as caught:
        _chat().execute({})
    assert "Bearer ***" in str(caught.value) and TEST_TOKEN not in str(caught.value) + repr(caught.value.__dict__)


def test_an_answer_cut_by_max_tokens_says_so(ovh_stub):
    ovh_stub.respond(200, body=_answer('{"topics": ["Airflow", "sched', finish_reason="length"))
    with pytest.raises(StructuredOutputError, match=r"cut by max_tokens \(finish_reason='length'\): raise max_tokens"):
        _chat(max_tokens=12).execute({})


def test_no_content_is_still_no_content(ovh_stub):
    ovh_stub.respond(200, body=_answer(None))
    with pytest.raises(NoContentError):
        _chat().execute({})


def test_response_format_in_completion_kwargs_is_refused_with_output_schema(ovh_stub):
    kwargs = {"response_format": {"type": "json_object"}, "seed": 1}
    with pytest.raises(InvalidRequestError, match=r"completion_kwargs sets 'response_format' and the operator has "):
        _chat(completion_kwargs=kwargs)
    # A whole-dict template is known only after rendering: refused then, before any request.
    operator = _chat(completion_kwargs="{{ params.kwargs }}")
    operator.completion_kwargs = kwargs  # what a native rendering gives
    with pytest.raises(InvalidRequestError, match="pass one or the other"):
        operator.execute({})
    assert _posts(ovh_stub) == []
    # Without output_schema, response_format in completion_kwargs is sent as it is.
    OVHCloudAIEndpointsChatCompletionsOperator(
        task_id="t", model="gpt-oss-120b", messages=HI, completion_kwargs=kwargs
    ).execute({})
    assert _posts(ovh_stub)[-1].body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "nope"}, "at output_schema['type']: 'nope' is not valid"),
        ({"properties": {"a": {"minItems": -1}}}, "at output_schema['properties']['a']['minItems']: -1"),
        ([{"type": "object"}], "must be a JSON Schema mapping, not list"),
    ],
)
def test_an_invalid_schema_is_a_dag_import_error(schema, problem):
    with pytest.raises(InvalidRequestError, match=r"^Invalid request: output_schema ") as caught:
        OVHCloudAIEndpointsChatCompletionsOperator(task_id="t", model="m", messages=HI, output_schema=schema)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("task_id", "name"),
    [
        ("extract", "extract"),
        ("group.extract-topics_2", "group_extract-topics_2"),
        ("x" * 70 + ".y", "x" * 64),
    ],
)
def test_the_schema_name_is_the_task_id_made_valid_for_openai(task_id, name):
    assert schema_name(task_id) == name


# -- chat_json on its own --------------------------------------------------------------------


def test_chat_json_parses_without_a_schema_and_validates_with_one():
    assert chat_json(_answer('  {"a": [1, 2.5, null]} \n')) == {"a": [1, 2.5, None]}
    assert chat_json(_answer("[1]"), {"type": "array", "items": {"type": "integer"}}) == [1]
    with pytest.raises(StructuredOutputError) as caught:
        chat_json(_answer("[1, 2, 3.5]"), {"type": "array", "items": {"type": "integer"}})
    assert caught.value.json_path == "$[2]"
    with pytest.raises(StructuredOutputError, match=r"is not valid JSON at \$ \(Expecting value: line 1 column 1\)"):
        chat_json(_answer("Here is the JSON you asked for"))


# -- serialization ---------------------------------------------------------------------------


def test_dags_with_output_schema_serialize_mapped_or_not(airflow_db):
    with DAG(dag_id=dag_id("structured_serialized"), start_date=datetime(2024, 1, 1), schedule=None) as dag:
        _chat("plain")
        OVHCloudAIEndpointsChatCompletionsOperator.partial(
            task_id="mapped", model="gpt-oss-120b", output_schema=TOPICS
        ).expand(messages=[HI, HI])
    json.dumps(serialized(dag))  # JSON, as Airflow stores it
    rebuilt = round_trip(dag)
    # A mapped task keeps it in partial_kwargs (each mapped instance is built from them).
    assert rebuilt.get_task("mapped").partial_kwargs["output_schema"] == TOPICS
    # Like temperature or max_tokens, a plain (non-template) argument is not part of the serialized
    # operator: Airflow's serializer cannot rebuild a dict attribute there, and workers run the
    # operator of the DAG file, not the serialized one (the run tests above see the schema applied).
    assert rebuilt.get_task("plain").task_id == "plain"


def _answer(content, finish_reason="stop"):
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-oss-120b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }

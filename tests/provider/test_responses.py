"""2xx answers that are not what the API promises, from a real server on 127.0.0.1: a proxy's HTML
page, broken JSON, JSON of the wrong shape, bodies echoing the token. The hook turns each into a
clear error (or a redacted dict); nothing raw (AttributeError, JSONDecodeError, the token) escapes.
"""

from __future__ import annotations

import json

import pytest
from ovh_stub import ECHO_AUTHORIZATION

from ovh_ai_dagfactory.calls import errors, redaction
from ovh_ai_dagfactory.compat import AirflowFailException
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from provider.shared import TEST_TOKEN

pytestmark = pytest.mark.usefixtures("stub_connection")

CHAT_MODEL = "Meta-Llama-3_3-70B-Instruct"
HI = [{"role": "user", "content": "hi"}]
HTML = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Maintenance</h1></body></html>"


def chat_answer(content, finish_reason="stop", **message):
    """A chat.completion body as the API sends it, with the first message's content set."""
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": CHAT_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chat():
    return OVHCloudAIEndpointsHook().chat_completion(model=CHAT_MODEL, messages=HI)


def _embed(input="x"):  # noqa: A002
    return OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input=input)


# -- a body that is not JSON: transient ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (HTML, "text/html; charset=utf-8", "not JSON (Expecting value at line 1 column 1)"),
        (b'{"id": "chatcmpl-x", "choices": [', "application/json", "not JSON (Expecting value at line 1 column 34)"),
        (b"", "application/json", "empty"),
    ],
)
def test_a_2xx_body_that_is_not_json_is_a_transient_unexpected_response(ovh_stub, body, content_type, why):
    ovh_stub.respond(200, body=body, headers={"content-type": content_type})
    with pytest.raises(errors.UnexpectedResponseError) as caught:
        _chat()
    error, message = caught.value, str(caught.value)
    [request] = ovh_stub.requests  # the SDK does not retry a 2xx
    assert message.startswith(
        f"Unexpected response: chat completion on {ovh_stub.base_url}/chat/completions answered HTTP 200 "
        f"({content_type}) with a body that is {why}: "
    )
    assert "task's own Airflow retries" in message and f"(request id: {request.request_id})" in message
    assert type(error) is errors.UnexpectedResponseError and not isinstance(error, AirflowFailException)
    assert (error.http_status, error.content_type, error.request_id) == (200, content_type, request.request_id)
    assert error.url == f"{ovh_stub.base_url}/chat/completions" and error.operation == "chat completion"


def test_the_excerpt_of_an_html_page_is_short_and_on_one_line(ovh_stub):
    ovh_stub.respond(200, body=HTML + "\n<p>filler</p>" * 500, headers={"content-type": "text/html"})
    with pytest.raises(errors.UnexpectedResponseError) as caught:
        _embed()
    message = str(caught.value)
    assert "embedding on " in message and "'<!DOCTYPE html><html><head><title>502 Bad Gateway</title>" in message
    assert "\n" not in message and len(message) < 1000 and "filler</p> <p>filler" in message


def test_list_models_and_the_test_button_explain_an_html_answer(ovh_stub):
    ovh_stub.respond(200, body=HTML, headers={"content-type": "text/html"}, times=2)
    with pytest.raises(errors.UnexpectedResponseError, match=r"^Unexpected response: list models on .*/v1/models "):
        OVHCloudAIEndpointsHook().list_models()
    ok, message = OVHCloudAIEndpointsHook().test_connection()
    assert not ok and message.startswith("Unexpected response: list models") and "502 Bad Gateway" in message


# -- JSON of the wrong shape: fatal -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([chat_answer("hi")], "the body is a JSON array, not an object"),
        ("just a string", "the body is a JSON string, not an object"),
        ({"object": "error", "message": "ok"}, "no 'choices' list"),
        ({**chat_answer("hi"), "choices": "hi"}, "'choices' is a string, not a list"),
        ({**chat_answer("hi"), "choices": ["hi"]}, "choices[0] is a string, not an object"),
        ({**chat_answer("hi"), "choices": [{"message": "hi"}]}, "choices[0].message is a string, not an object"),
        (chat_answer(42), "choices[0].message.content is a number, not a string or null"),
        (chat_answer("hi", tool_calls={"a": 1}), "choices[0].message.tool_calls is an object, not an array or null"),
        (chat_answer("hi", finish_reason=3), "choices[0].finish_reason is a number, not a string"),
        ({**chat_answer("hi"), "usage": [1]}, "'usage' is an array, not an object"),
    ],
)
def test_json_that_is_not_a_chat_completion_is_fatal(ovh_stub, body, problem):
    # A str body is sent as text/plain by the stub: the JSON string must be encoded to be JSON.
    ovh_stub.respond(
        200,
        body=json.dumps(body).encode() if isinstance(body, str) else body,
        headers={"content-type": "application/json"},
    )
    with pytest.raises(errors.IncompatibleResponseError) as caught:
        _chat()
    message = str(caught.value)
    assert message.startswith(
        f"Unexpected response: chat completion on {ovh_stub.base_url}/chat/completions "
        "answered HTTP 200 (application/json) with JSON that is not a chat completion "
    )
    assert f"({problem}): " in message and "Not retried" in message
    assert isinstance(caught.value, AirflowFailException) and isinstance(caught.value, errors.UnexpectedResponseError)
    assert len(ovh_stub.requests) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"object": "list", "model": "BGE-M3"}, "no 'data' list"),
        ({"object": "list", "data": {"embedding": [1.0]}}, "'data' is an object, not a list"),
        ({"object": "list", "data": [[0.1, 0.2]]}, "data[0] is an array, not an object"),
        ({"object": "list", "data": [{"index": 0, "embedding": ["0.1"]}]}, "data[0].embedding holds something other"),
        ({"object": "list", "data": [{"index": 0, "embedding": {"v": 1}}]}, "data[0].embedding is an object, not a"),
        ({"object": "list", "data": [{"index": "0", "embedding": [0.1]}]}, "data[0].index is a string, not an integer"),
    ],
)
def test_json_that_is_not_an_embeddings_list_is_fatal(ovh_stub, body, problem):
    ovh_stub.respond(200, body=body)
    with pytest.raises(errors.IncompatibleResponseError) as caught:
        _embed()
    assert str(caught.value).startswith(f"Unexpected response: embedding on {ovh_stub.base_url}/embeddings ")
    assert f"not an embeddings list ({problem}" in str(caught.value)


def test_the_hook_returns_a_well_formed_answer_without_text_as_it_came(ovh_stub):
    # Refusing it is the operator's job: a Python caller may want a tool-calls-only answer.
    body = chat_answer(
        None, "tool_calls", tool_calls=[{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    )
    ovh_stub.respond(200, body=body)
    assert _chat() == body


def test_the_wire_json_is_returned_exactly_vendor_fields_included(ovh_stub):
    body = {**chat_answer("hi"), "system_fingerprint": None, "x_vendor": {"latency_ms": 12}}
    ovh_stub.respond(200, body=body)
    assert _chat() == body


# -- the token, echoed in a 200 ------------------------------------------------------------------


def test_a_token_echoed_in_a_200_body_is_redacted_everywhere_in_the_returned_dict(ovh_stub):
    body = chat_answer(f"your header was {ECHO_AUTHORIZATION}", debug={"headers": [ECHO_AUTHORIZATION]})
    body[ECHO_AUTHORIZATION] = ECHO_AUTHORIZATION  # even as a key
    ovh_stub.respond(200, body=body)
    response = _chat()
    assert ovh_stub.requests[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"  # the echo was real
    assert response["choices"][0]["message"]["content"] == "your header was Bearer ***"
    assert response["choices"][0]["message"]["debug"] == {"headers": ["Bearer ***"]}
    assert response["Bearer ***"] == "Bearer ***"
    assert TEST_TOKEN not in json.dumps(response)


def test_a_token_echoed_with_json_escapes_is_redacted_too(ovh_stub):
    # `\u0073` is "s": the raw body does not contain the token, the decoded string does.
    escaped = "\\u" + format(ord(TEST_TOKEN[0]), "04x") + TEST_TOKEN[1:]
    ovh_stub.respond(
        200,
        body=json.dumps(chat_answer("TOKEN")).replace("TOKEN", escaped).encode(),
        headers={"content-type": "application/json"},
    )
    response = _chat()
    assert TEST_TOKEN not in json.dumps(response) and response["choices"][0]["message"]["content"] == "***"


def test_a_token_echoed_in_an_unexpected_body_is_not_in_the_message(ovh_stub, caplog, capfd):
    page = f"<html>Authorization: {ECHO_AUTHORIZATION}</html>"
    ovh_stub.respond(200, body=page, headers={"content-type": "text/html"})
    with pytest.raises(errors.UnexpectedResponseError) as caught:
        _chat()
    assert "Authorization: Bearer ***" in str(caught.value)
    out, err = capfd.readouterr()
    for text in (str(caught.value), repr(caught.value), repr(caught.value.serialize()), out, err, caplog.text):
        assert TEST_TOKEN not in text


def test_redaction_skips_the_walk_when_the_body_cannot_hold_the_token():
    vectors = {"object": "list", "data": [{"index": 0, "embedding": [0.5] * 4096}]}
    text = json.dumps(vectors)
    assert redaction.redact_json(vectors, [TEST_TOKEN], text) is vectors  # same object: nothing was copied
    echoed = {"data": [{"note": f"k={TEST_TOKEN}"}]}
    assert redaction.redact_json(echoed, [TEST_TOKEN]) == {"data": [{"note": "k=***"}]}
    assert redaction.redact_json(echoed, [""]) is echoed  # anonymous: no secret to look for

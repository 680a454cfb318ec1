"""`calls.results`: the one definition of a chat answer's text and an embedding answer's vectors,
on answers the hook received over HTTP from the stub. (Every kind of answer without a result is
also checked through the operators, in test_responses_in_dags.py.)
"""

from __future__ import annotations

import base64
import struct

import pytest

from ovh_ai_dagfactory.calls.errors import NoContentError
from ovh_ai_dagfactory.calls.results import chat_content, embedding_vectors
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook

pytestmark = pytest.mark.usefixtures("stub_connection")

HI = [{"role": "user", "content": "hi"}]


def _chat(ovh_stub, body=None):
    if body is not None:
        ovh_stub.respond(200, body=body)
    return OVHCloudAIEndpointsHook().chat_completion(model="gpt-oss-120b", messages=HI)


def test_chat_content_is_the_first_choices_text_as_written(ovh_stub):
    assert chat_content(_chat(ovh_stub)) == "Echo from gpt-oss-120b: hi"
    padded = {"choices": [{"message": {"content": "  kept as is\n"}, "finish_reason": "stop"}]}
    assert chat_content(_chat(ovh_stub, padded)) == "  kept as is\n"


def test_chat_content_without_text_names_what_came_back_and_the_finish_reason(ovh_stub):
    cut = {
        "id": "chatcmpl-9",
        "model": "gpt-oss-120b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "length"}],
    }
    with pytest.raises(NoContentError) as caught:
        chat_content(_chat(ovh_stub, cut), max_tokens=32)
    assert str(caught.value).startswith(
        "No content: chat completion of model 'gpt-oss-120b' returned content null "
        "(finish_reason='length', response id 'chatcmpl-9'). The model reached max_tokens (32)"
    )
    assert caught.value.finish_reason == "length"


def test_embedding_vectors_come_in_input_order(ovh_stub):
    ovh_stub.respond(
        200,
        body={"object": "list", "data": [{"index": 1, "embedding": [0.2, 0.3]}, {"index": 0, "embedding": [0.1, 0.0]}]},
    )
    response = OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input=["first", "second"])
    assert embedding_vectors(response, expected=2) == [[0.1, 0.0], [0.2, 0.3]]
    with pytest.raises(NoContentError, match=r"returned 2 vector\(s\) with indexes \[0, 1\] for 3 input\(s\)"):
        embedding_vectors(response, expected=3)


def test_embedding_vectors_of_the_stub_match_the_inputs(ovh_stub):
    response = OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input=["a", "b", "c"])
    vectors = embedding_vectors(response)
    assert [len(v) for v in vectors] == [1024, 1024, 1024]
    assert vectors == [item["embedding"] for item in response["data"]]


def test_base64_vectors_are_decoded_to_floats(ovh_stub):
    packed = base64.b64encode(struct.pack("<3f", 0.5, -1.0, 2.25)).decode()
    ovh_stub.respond(200, body={"object": "list", "data": [{"index": 0, "embedding": packed}]})
    response = OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input="x", encoding_format="base64")
    assert ovh_stub.requests[-1].body["encoding_format"] == "base64"
    assert embedding_vectors(response, expected=1) == [[0.5, -1.0, 2.25]]
    ovh_stub.respond(200, body={"object": "list", "data": [{"index": 0, "embedding": "AAAA#"}]})
    broken = OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input="x", encoding_format="base64")
    with pytest.raises(NoContentError, match="a base64 vector that is not float32 data"):
        embedding_vectors(broken)

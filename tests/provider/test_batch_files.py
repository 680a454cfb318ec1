"""The batch files without a server: the JSONL built per input, results mapped back by custom_id
whatever the line order, failures (error file, non-2xx, no result, no line) and the XCom shapes;
and the trigger's registration with Airflow's provider info.
"""

from __future__ import annotations

import json
import random

import pytest
from ovh_stub import _chat, _embeddings

from ovh_ai_dagfactory.batch_api.files import (
    custom_ids_for,
    embedding_response,
    read_results,
    request_file,
)
from ovh_ai_dagfactory.calls.errors import IncompatibleResponseError, InvalidRequestError
from ovh_ai_dagfactory.provider_info import get_provider_info

MODEL = "gpt-oss-120b"


def _line(custom_id, body, status=200):
    return json.dumps({"custom_id": custom_id, "response": {"status_code": status, "body": body}, "error": None})


def test_one_line_per_input_with_the_index_as_custom_id_and_extra_body_merged():
    content = request_file(
        "chat",
        MODEL,
        [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]],
        {"seed": 3, "temperature": None, "extra_body": {"top_k": 5}},
        custom_ids_for(2, None),
    )
    lines = [json.loads(line) for line in content.decode().splitlines()]
    assert [line["custom_id"] for line in lines] == ["0", "1"]
    assert lines[1] == {
        "custom_id": "1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "b"}], "seed": 3, "top_k": 5},
    }


@pytest.mark.parametrize("given", [["a", "a"], ["a"], ["a", ""], ["a", 2]])
def test_given_custom_ids_must_be_unique_strings_one_per_input(given):
    with pytest.raises(InvalidRequestError, match="custom_ids must be one unique"):
        custom_ids_for(2, given)


def test_results_come_back_in_input_order_whatever_the_line_order():
    ids = [f"q{i}" for i in range(50)]
    lines = [_line(custom_id, _chat(MODEL, [{"role": "user", "content": custom_id}])) for custom_id in ids]
    random.Random(3).shuffle(lines)
    results = read_results("\n".join(lines), None, ids, kind="chat", batch_id="b")

    assert [r["choices"][0]["message"]["content"] for r in results.responses] == [
        f"Echo from {MODEL}: {i}" for i in ids
    ]
    assert results.failures == []


def test_failures_of_every_kind_are_reported_by_index_and_custom_id():
    ids = ["ok", "refused", "no-content", "missing", "error-object"]
    empty = _chat(MODEL, [{"role": "user", "content": "x"}])
    empty["choices"][0]["message"]["content"] = None
    output = "\n".join(
        [
            _line("no-content", empty),
            _line("ok", _chat(MODEL, [{"role": "user", "content": "fine"}])),
            _line("ok", _chat(MODEL, [{"role": "user", "content": "repeated: ignored"}])),
            _line("someone-else", _chat(MODEL, [{"role": "user", "content": "not ours"}])),
        ]
    )
    errors = "\n".join(
        [
            _line("refused", {"error": {"message": "bad request", "code": "invalid"}}, status=400),
            json.dumps({"custom_id": "error-object", "response": None, "error": {"code": "500", "message": "boom"}}),
        ]
    )
    results = read_results(output, errors, ids, kind="chat", batch_id="b")

    assert results.responses[0]["choices"][0]["message"]["content"] == f"Echo from {MODEL}: fine"
    assert results.responses[1:] == [None] * 4
    assert [(f.index, f.custom_id, f.status_code) for f in results.failures] == [
        (1, "refused", 400),
        (2, "no-content", 200),
        (3, "missing", None),
        (4, "error-object", 500),
    ]
    assert results.failures[0].error == "bad request (code invalid)"
    assert "No content" in results.failures[1].error


def test_a_line_that_is_not_json_is_an_incompatible_response():
    with pytest.raises(IncompatibleResponseError, match="line 2 of batch b"):
        read_results(_line("0", {}) + "\n<html>", None, ["0"], kind="chat", batch_id="b")


def test_embeddings_are_one_response_indexed_by_input_with_usage_summed():
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    lines = [_line(str(i), _embeddings("BGE-M3", [text])) for i, text in enumerate(texts)]
    results = read_results("\n".join(reversed(lines)), None, custom_ids_for(3, None), kind="embedding", batch_id="b")
    response = embedding_response(results, "BGE-M3")

    expected = _embeddings("BGE-M3", texts)
    assert response == {
        "object": "list",
        "data": expected["data"],
        "model": "BGE-M3",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }


def test_the_trigger_and_the_batch_operator_are_registered_with_airflow():
    info = get_provider_info()
    assert info["triggers"] == [
        {"integration-name": "OVHcloud AI Endpoints", "python-modules": ["ovh_ai_dagfactory.triggers.batch"]}
    ]
    assert "ovh_ai_dagfactory.operators.batch" in info["operators"][0]["python-modules"]

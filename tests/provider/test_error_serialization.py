"""Every error class of calls/errors.py survives `pickle` and Airflow's own exception serialization.

Airflow (2.11 and 3.x) serializes an AirflowException with its `serialize()` -> (class path, args,
kwargs) and rebuilds it as `cls(*args, **kwargs)` (`BaseSerialization`, DAT.AIRFLOW_EXC_SER: task
deferral, trigger events, the internal API); pickle rebuilds `cls(*args)` then restores `__dict__`
(multiprocessing executors, callbacks). The classes are enumerated, so a new one is covered without
editing this file.
"""

from __future__ import annotations

import json
import pickle

import pytest

from ovh_ai_dagfactory.calls import errors
from ovh_ai_dagfactory.compat import AirflowException, AirflowFailException
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from provider.shared import TEST_TOKEN


def _all_subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += [c for c in _all_subclasses(sub) if c not in found]
    return found


ERROR_CLASSES = _all_subclasses(errors.OVHCloudAIEndpointsError)

# Attributes any of our errors may carry; each class gets all of them, whatever it usually sets.
ATTRIBUTES = {
    "http_status": 404,
    "request_id": "req-0042",
    "model": "bge-m3",
    "suggestions": ["BGE-M3", "bge-multilingual-gemma2"],
    "url": "http://127.0.0.1:1/v1/chat/completions",
    "content_type": "text/html",
    "operation": "chat completion",
    "finish_reason": "length",
}


def _airflow_round_trip(error: Exception) -> Exception:
    from airflow.serialization.serialized_objects import BaseSerialization

    return BaseSerialization.deserialize(BaseSerialization.serialize(error))


def _pickle_round_trip(error: Exception) -> Exception:
    return pickle.loads(pickle.dumps(error))


def _same(rebuilt: Exception, error: Exception) -> None:
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    for name in ATTRIBUTES:
        assert getattr(rebuilt, name, None) == getattr(error, name, None), name
    # The retry policy travels with the class: fatal stays fatal.
    assert isinstance(rebuilt, AirflowFailException) == isinstance(error, AirflowFailException)


def test_every_error_class_is_found():
    names = {cls.__name__ for cls in ERROR_CLASSES}
    assert {"ModelNotFoundError", "UnexpectedResponseError", "IncompatibleResponseError", "NoContentError"} <= names
    assert all(issubclass(cls, AirflowException) for cls in ERROR_CLASSES)


@pytest.mark.parametrize("round_trip", [_pickle_round_trip, _airflow_round_trip], ids=["pickle", "airflow"])
@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_round_trips_with_its_message_and_attributes(error_class, round_trip):
    error = error_class(f"{error_class.__name__}: something went wrong.", **ATTRIBUTES)
    _same(round_trip(error), error)


@pytest.mark.parametrize("round_trip", [_pickle_round_trip, _airflow_round_trip], ids=["pickle", "airflow"])
@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_round_trips_from_a_message_alone(error_class, round_trip):
    error = error_class("just a message")
    rebuilt = round_trip(error)
    _same(rebuilt, error)
    assert rebuilt.http_status == error_class.http_status  # the class default, e.g. 401


@pytest.mark.parametrize("round_trip", [_pickle_round_trip, _airflow_round_trip], ids=["pickle", "airflow"])
def test_a_real_model_not_found_error_round_trips(stub_connection, ovh_stub, round_trip):
    with pytest.raises(errors.ModelNotFoundError) as caught:
        OVHCloudAIEndpointsHook().chat_completion(model="gpt-oss-12b", messages=[{"role": "user", "content": "x"}])
    error = caught.value
    rebuilt = round_trip(error)
    _same(rebuilt, error)
    assert (rebuilt.model, rebuilt.suggestions[0], rebuilt.http_status) == ("gpt-oss-12b", "gpt-oss-120b", 404)
    assert rebuilt.request_id == error.request_id and rebuilt.request_id.startswith("req-")


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_no_error_class_shadows_airflows_status_code(error_class):
    # AirflowException.status_code is what Airflow's API answers with (HTTPStatus on Airflow 3);
    # the endpoint's status is `http_status`, so an error built with one leaves the other alone.
    error = error_class("m", http_status=429)
    assert error.status_code == AirflowException.status_code and error.http_status == 429
    assert "status_code" not in vars(error_class)


def test_a_real_unexpected_response_error_round_trips_without_the_token(stub_connection, ovh_stub):
    ovh_stub.respond(200, body="<html>echo: <echo authorization></html>", headers={"content-type": "text/html"})
    with pytest.raises(errors.UnexpectedResponseError) as caught:
        OVHCloudAIEndpointsHook().create_embedding(model="BGE-M3", input="x")
    serialized = _airflow_serialized_text(caught.value)
    assert TEST_TOKEN not in serialized and "Bearer ***" in serialized
    _same(_airflow_round_trip(caught.value), caught.value)


def _airflow_serialized_text(error: Exception) -> str:
    from airflow.serialization.serialized_objects import BaseSerialization

    return json.dumps(BaseSerialization.serialize(error))

"""The errors of the OVHcloud AI Endpoints provider: one class per thing that can go wrong.

Every message starts with the words of the seed's error table ("API key not found", "401
Unauthorized", "429 Too Many Requests", "Model not found: '<name>'") and then says what to do.
The messages for HTTP errors are written in `sdk_errors.py`, those for 2xx bodies in `responses.py`.

Two families, because Airflow decides retries from the exception class:
- `OVHCloudAIEndpointsFatalError` (also an `AirflowFailException`): the request itself is wrong
  (400, 401, 403, 404, 422, other 4xx, missing token). Retrying the task cannot help, so Airflow
  fails it at once even when the task has `retries`.
- plain `OVHCloudAIEndpointsError`: transient (429, 408, 409, 5xx, timeouts, connection errors,
  a 2xx whose body is not JSON, a structured answer that does not match its `output_schema`).
  The SDK has already retried what it retries (never a 2xx); the task's own `retries` come next.

Every class can be rebuilt from its message and attributes alone, as `pickle` and Airflow's
exception serialization (`serialize()` → class path, args, kwargs → `cls(*args, **kwargs)`) do.

The HTTP status the endpoint answered is `http_status`, not `status_code`: Airflow 3 gives every
AirflowException a `status_code` (the HTTPStatus its own API answers with), which ours must not
shadow.
"""

from __future__ import annotations

from typing import Any

from ovh_ai_dagfactory.compat import AirflowException, AirflowFailException


class OVHCloudAIEndpointsError(AirflowException):
    """Any failure of a call to AI Endpoints. Transient when not also a fatal error.

    Keyword arguments become attributes (`http_status`, `request_id`, ...), so that an error is
    rebuilt with them by `cls(message, **attributes)`: what `serialize()` returns for Airflow.
    """

    #: The status the endpoint answered (an int), None when there was no answer.
    http_status: int | None = None
    request_id: str | None = None

    def __init__(self, message: str = "", **attributes: Any) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)

    def serialize(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        # Airflow's own serialize() keeps only the message: http_status, model, suggestions... would
        # be lost, and a subclass with keyword arguments could not be rebuilt at all.
        cls = type(self)
        attributes = {name: value for name, value in vars(self).items() if not name.startswith("_")}
        return f"{cls.__module__}.{cls.__name__}", (str(self),), attributes


class OVHCloudAIEndpointsFatalError(OVHCloudAIEndpointsError, AirflowFailException):
    """A failure that retrying cannot fix: Airflow fails the task without using its retries."""


class ApiKeyNotFoundError(OVHCloudAIEndpointsFatalError):
    """The connection is missing, or has neither a password nor an `api_key` extra."""


class BadRequestError(OVHCloudAIEndpointsFatalError):
    http_status = 400


class UnauthorizedError(OVHCloudAIEndpointsFatalError):
    http_status = 401


class ForbiddenError(OVHCloudAIEndpointsFatalError):
    http_status = 403


class ModelNotFoundError(OVHCloudAIEndpointsFatalError):
    http_status = 404

    # Defaults: pickle rebuilds an exception as `cls(*args)` and only then restores its attributes.
    def __init__(
        self, message: str = "", *, model: str = "", suggestions: list[str] | None = None, **attributes: Any
    ) -> None:
        super().__init__(message, model=model, suggestions=list(suggestions or []), **attributes)


class EndpointNotFoundError(OVHCloudAIEndpointsFatalError):
    """404 for a model the endpoint does list: the base URL or path is wrong."""

    http_status = 404


class UnprocessableEntityError(OVHCloudAIEndpointsFatalError):
    http_status = 422


class RequestRejectedError(OVHCloudAIEndpointsFatalError):
    """Any other 4xx that is not worth retrying (e.g. 413 when the body exceeds 2 MB)."""


class RateLimitError(OVHCloudAIEndpointsError):
    """429 after the SDK's retries. Attribute: `retry_after` (seconds the server asked, or None)."""

    http_status = 429


class ServerError(OVHCloudAIEndpointsError):
    """5xx, 408 or 409 after the SDK's retries."""


class EndpointConnectionError(OVHCloudAIEndpointsError):
    """The endpoint could not be reached (DNS, refused connection, TLS, dropped connection)."""


class EndpointTimeoutError(EndpointConnectionError):
    """No answer within the configured timeout."""


class UnexpectedResponseError(OVHCloudAIEndpointsError):
    """A 2xx whose body is not JSON (a proxy's HTML page, a truncated body): plausibly transient, so
    the task's retries apply. The SDK never retries a 2xx. Attributes: `operation`, `url`,
    `http_status`, `content_type`, `request_id`."""


class IncompatibleResponseError(UnexpectedResponseError, OVHCloudAIEndpointsFatalError):
    """A 2xx with JSON of the wrong shape (no `choices`, wrong types): the server speaks another
    API, and would answer the same way again, so the task fails without using its retries."""


class NoContentError(OVHCloudAIEndpointsFatalError):
    """A well-formed answer without a result: a chat answer without text (null or empty content,
    no choices, tool calls only, a refusal) or an embedding answer without one vector per input.
    Raised by `results.chat_content` / `results.embedding_vectors`, hence by the operators, which
    must not push such an answer to XCom. Fatal: the cause is the request (max_tokens, prompt,
    model) far more often than the moment. Attribute: `finish_reason`."""


class StructuredOutputError(OVHCloudAIEndpointsError):
    """A chat answer asked for with `output_schema` that is not valid JSON, or JSON that does not
    match the schema. Transient: a model samples again, so the task's retries apply (the SDK's do
    not: the answer was a 2xx). Raised by `results.chat_json`, hence by the chat operator, which
    must not push such an answer to XCom. Attributes: `json_path` (where validation failed, `$`
    for the whole answer), `finish_reason`."""

    json_path: str | None = None
    finish_reason: str | None = None


class InvalidRequestError(OVHCloudAIEndpointsFatalError):
    """A request the provider refuses before sending it: `stream=True`, a parameter given twice
    (as an operator argument and in `completion_kwargs` / `embedding_kwargs`), or a parameter the
    installed openai SDK does not accept. No request is made."""


def api_key_not_found(conn_id: str, *, conn_exists: bool) -> ApiKeyNotFoundError:
    why = (
        f"connection '{conn_id}' was not found (not in the metadata DB, a secrets backend or "
        f"AIRFLOW_CONN_{conn_id.upper()}, or its URI could not be parsed)"
        if not conn_exists
        else f"connection '{conn_id}' has no password and no 'api_key' extra"
    )
    return ApiKeyNotFoundError(
        f"API key not found: {why}. Set the token as the connection password, e.g. "
        f"`airflow connections add {conn_id} --conn-type ovhcloud_ai_endpoints --conn-password <token>` "
        f"or the environment variable AIRFLOW_CONN_{conn_id.upper()}="
        '\'{"conn_type": "ovhcloud_ai_endpoints", "password": "<token>"}\'. '
        'For anonymous access (rate-limited much lower than with a token) set the extra {"anonymous": true}.'
    )

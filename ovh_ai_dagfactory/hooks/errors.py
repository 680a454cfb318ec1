"""Errors of the OVHcloud AI Endpoints hook, and the translation of openai SDK errors into them.

Every message starts with the words of the seed's error table ("API key not found", "401
Unauthorized", "429 Too Many Requests", "Model not found: '<name>'") and then says what to do.

Two families, because Airflow decides retries from the exception class:
- `OVHCloudAIEndpointsFatalError` (also an `AirflowFailException`): the request itself is wrong
  (400, 401, 403, 404, 422, other 4xx, missing token). Retrying the task cannot help, so Airflow
  fails it at once even when the task has `retries`.
- plain `OVHCloudAIEndpointsError`: transient (429, 408, 409, 5xx, timeouts, connection errors,
  a 2xx whose body is not JSON). The SDK has already retried what it retries (never a 2xx); the
  task's own `retries` come next.

Every class can be rebuilt from its message and attributes alone, as `pickle` and Airflow's
exception serialization (`serialize()` → class path, args, kwargs → `cls(*args, **kwargs)`) do.

This module does not import openai: it reads the attributes the SDK's exceptions carry
(`status_code`, `body`, `request_id`, `response`), so importing the hook stays cheap.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from typing import Any

from ovh_ai_dagfactory.compat import AirflowException, AirflowFailException

CATALOG_URL = "https://endpoints.ai.cloud.ovh.net/catalog/"
_MAX_SERVER_MESSAGE = 300  # keep messages readable when a server returns a whole HTML page
_SDK_MAX_RETRY_AFTER = 120.0  # openai's MAX_RETRY_AFTER_DELAY: a longer Retry-After is not retried


class OVHCloudAIEndpointsError(AirflowException):
    """Any failure of a call to AI Endpoints. Transient when not also a fatal error.

    Keyword arguments become attributes (`status_code`, `request_id`, ...), so that an error is
    rebuilt with them by `cls(message, **attributes)`: what `serialize()` returns for Airflow.
    """

    # Airflow 3 types AirflowException.status_code as the HTTPStatus its API answers with; ours is the
    # status the endpoint answered (an int, None when there was no answer).
    status_code: int | None = None  # type: ignore[assignment]
    request_id: str | None = None

    def __init__(self, message: str = "", **attributes: Any) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)

    def serialize(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        # Airflow's own serialize() keeps only the message: status_code, model, suggestions... would
        # be lost, and a subclass with keyword arguments could not be rebuilt at all.
        cls = type(self)
        attributes = {name: value for name, value in vars(self).items() if not name.startswith("_")}
        return f"{cls.__module__}.{cls.__name__}", (str(self),), attributes


class OVHCloudAIEndpointsFatalError(OVHCloudAIEndpointsError, AirflowFailException):
    """A failure that retrying cannot fix: Airflow fails the task without using its retries."""


class ApiKeyNotFoundError(OVHCloudAIEndpointsFatalError):
    """The connection is missing, or has neither a password nor an `api_key` extra."""


class BadRequestError(OVHCloudAIEndpointsFatalError):
    status_code = 400  # type: ignore[assignment]


class UnauthorizedError(OVHCloudAIEndpointsFatalError):
    status_code = 401  # type: ignore[assignment]


class ForbiddenError(OVHCloudAIEndpointsFatalError):
    status_code = 403  # type: ignore[assignment]


class ModelNotFoundError(OVHCloudAIEndpointsFatalError):
    status_code = 404  # type: ignore[assignment]

    # Defaults: pickle rebuilds an exception as `cls(*args)` and only then restores its attributes.
    def __init__(
        self, message: str = "", *, model: str = "", suggestions: list[str] | None = None, **attributes: Any
    ) -> None:
        super().__init__(message, model=model, suggestions=list(suggestions or []), **attributes)


class EndpointNotFoundError(OVHCloudAIEndpointsFatalError):
    """404 for a model the endpoint does list: the base URL or path is wrong."""

    status_code = 404  # type: ignore[assignment]


class UnprocessableEntityError(OVHCloudAIEndpointsFatalError):
    status_code = 422  # type: ignore[assignment]


class RequestRejectedError(OVHCloudAIEndpointsFatalError):
    """Any other 4xx that is not worth retrying (e.g. 413 when the body exceeds 2 MB)."""


class RateLimitError(OVHCloudAIEndpointsError):
    status_code = 429  # type: ignore[assignment]


class ServerError(OVHCloudAIEndpointsError):
    """5xx, 408 or 409 after the SDK's retries."""


class EndpointConnectionError(OVHCloudAIEndpointsError):
    """The endpoint could not be reached (DNS, refused connection, TLS, dropped connection)."""


class EndpointTimeoutError(EndpointConnectionError):
    """No answer within the configured timeout."""


class UnexpectedResponseError(OVHCloudAIEndpointsError):
    """A 2xx whose body is not JSON (a proxy's HTML page, a truncated body): plausibly transient, so
    the task's retries apply. The SDK never retries a 2xx. Attributes: `operation`, `url`,
    `status_code`, `content_type`, `request_id`."""


class IncompatibleResponseError(UnexpectedResponseError, OVHCloudAIEndpointsFatalError):
    """A 2xx with JSON of the wrong shape (no `choices`, wrong types): the server speaks another
    API, and would answer the same way again, so the task fails without using its retries."""


class NoContentError(OVHCloudAIEndpointsFatalError):
    """A well-formed answer without a result: a chat answer without text (null or empty content,
    no choices, tool calls only, a refusal) or an embedding answer without one vector per input.
    Raised by the operators, which must not push such an answer to XCom. Fatal: the cause is the
    request (max_tokens, prompt, model) far more often than the moment. Attribute: `finish_reason`."""


# -- messages ------------------------------------------------------------------------------------


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
        'For anonymous access (2 requests/min per IP and model) set the extra {"anonymous": true}.'
    )


class CallContext:
    """What a message needs to know about the call that failed."""

    def __init__(
        self,
        *,
        conn_id: str,
        base_url: str,
        operation: str,
        model: str | None,
        max_retries: int,
        timeout: float,
        secrets: Iterable[str] = (),
        list_models: Callable[[], list[str]] | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.base_url = base_url
        self.operation = operation
        self.model = model
        self.max_retries = max_retries
        self.timeout = timeout
        self.secrets = [s for s in secrets if s]
        self.list_models = list_models

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***`: a verbose server or proxy may echo the request
    headers back, and what we log or raise must never carry the token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_json(value: Any, secrets: Iterable[str], text: str | None = None) -> Any:
    """`value` (decoded JSON) with every secret replaced by `***` in every string, keys included.

    `text` is the serialized body when the caller has it. The walk is skipped when that text holds
    no secret and no escape sequence (an escaped secret would not show in the text): the common
    case, e.g. an embedding answer of thousands of floats, costs one substring search.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if text is None:
        text = json.dumps(value, ensure_ascii=False)
    if "\\" not in text and not any(secret in text for secret in secrets):
        return value
    return _redact_walk(value, secrets)


def _redact_walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {_redact_walk(k, secrets): _redact_walk(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_walk(item, secrets) for item in value]
    return value


def from_openai_error(exc: BaseException, ctx: CallContext) -> OVHCloudAIEndpointsError | None:
    """Our error for an openai SDK exception, or None if `exc` is not one we know how to explain."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if isinstance(status, int) and response is not None:
        error = _from_status(exc, status, ctx)
    elif type(exc).__name__ == "APITimeoutError":
        error = EndpointTimeoutError(
            f"Timeout: {ctx.operation} on {ctx.base_url} got no answer within {ctx.timeout:g} s, "
            f"{_tries(ctx.max_retries)}. Raise the connection extra 'timeout' (or the hook's `timeout`) "
            "for long generations, or lower max_tokens."
        )
    elif type(exc).__name__ == "APIConnectionError":
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        error = EndpointConnectionError(
            f"Connection error: could not reach {ctx.base_url}{ctx.redact(detail)}, "
            f"{_tries(ctx.max_retries)}. Check the connection host (base URL), DNS and proxy settings."
        )
    else:
        return None
    error.request_id = getattr(exc, "request_id", None)
    return error


def _from_status(exc: BaseException, status: int, ctx: CallContext) -> OVHCloudAIEndpointsError:
    request_id = getattr(exc, "request_id", None)
    server = ctx.redact(_server_message(exc))
    tail = f" Server said: {server}" if server else ""
    if request_id:
        tail += f" (request id: {request_id})"
    where = f"{ctx.operation} on {ctx.base_url}"

    error: OVHCloudAIEndpointsError
    if status == 401:
        error = UnauthorizedError(
            f"401 Unauthorized: the API token of connection '{ctx.conn_id}' was refused by {where} "
            "(invalid or expired). Verify your token is correct, or create a new one in the OVHcloud "
            f"Control Panel (Public Cloud > AI Endpoints > API keys) and update the connection.{tail}"
        )
    elif status == 403:
        error = ForbiddenError(
            f"403 Forbidden: {where} refused the API token of connection '{ctx.conn_id}'. The token "
            "may have been revoked (create a new one), or its Public Cloud project has no payment "
            "method (\"Resource tag 'discovery' is forbidden\": add one in the OVHcloud Control "
            f"Panel).{tail}"
        )
    elif status == 404:
        error = _not_found(ctx, where, tail)
    elif status == 429:
        retry_after = _retry_after(exc)
        if retry_after is not None and retry_after > _SDK_MAX_RETRY_AFTER:
            tries = f"not retried: the server asked to wait {retry_after:g} s, more than the client's 120 s cap"
        else:
            waited = f" (last Retry-After: {retry_after:g} s)" if retry_after is not None else ""
            tries = f"{_tries(ctx.max_retries, exc)}, honouring Retry-After{waited}"
        error = RateLimitError(
            f"429 Too Many Requests: rate limit exceeded for {_model(ctx)}{where}; "
            f"{tries}. Add task retries with a "
            "retry_delay (e.g. retries=3, retry_delay=timedelta(seconds=30)), lower concurrency with a "
            "pool, or use a token (anonymous: 2 requests/min, with a token: 400 requests/min per "
            f"model).{tail}"
        )
    elif status == 400:
        error = BadRequestError(
            f"400 Bad Request: {where} rejected the request for {_model(ctx)}the parameters. Check "
            f"messages, temperature (0-2), max_tokens and the model's supported features.{tail}"
        )
    elif status == 422:
        error = UnprocessableEntityError(
            f"422 Unprocessable Entity: {where} could not process the request for {_model(ctx)}"
            f"its body. Check the parameter types and values.{tail}"
        )
    elif status >= 500 or status in (408, 409):
        error = ServerError(
            f"{status} Server Error: {where} failed, {_tries(ctx.max_retries, exc)}. This is usually "
            f"temporary: task retries will try again later.{tail}"
        )
    else:
        error = RequestRejectedError(
            f"{status} Client Error: {where} rejected the request (a 413 means the body exceeds "
            f"2 MB: send fewer or shorter inputs).{tail}"
        )
    error.status_code = status
    return error


def _not_found(ctx: CallContext, where: str, tail: str) -> OVHCloudAIEndpointsError:
    if ctx.model is None:
        return EndpointNotFoundError(
            f"404 Not Found: {where}. Check the connection's base URL (it must end with the API root, e.g. /v1).{tail}"
        )
    available = _available_models(ctx)
    if available is not None and ctx.model in available:
        return EndpointNotFoundError(
            f"404 Not Found: {where} answered 404 although it lists model '{ctx.model}'. Check the "
            f"connection's base URL and path.{tail}"
        )
    suggestions = difflib.get_close_matches(ctx.model, available or [], n=3, cutoff=0.4)
    if not suggestions and available:
        # difflib's ratio is case-sensitive; OVH names mix cases (BGE-M3 vs bge-m3).
        lowered = {name.lower(): name for name in available}
        suggestions = [lowered[n] for n in difflib.get_close_matches(ctx.model.lower(), lowered, n=3)]
    if suggestions:
        hint = "Closest available: " + ", ".join(f"'{s}'" for s in suggestions) + "."
    elif available:
        hint = "Available: " + ", ".join(f"'{s}'" for s in available[:10]) + "."
    else:
        hint = "The endpoint did not list its models."
    return ModelNotFoundError(
        f"Model not found: '{ctx.model}' at {ctx.base_url}. {hint} Check available models in the "
        f"catalog: {CATALOG_URL}{tail}",
        model=ctx.model,
        suggestions=suggestions,
    )


def _available_models(ctx: CallContext) -> list[str] | None:
    if ctx.list_models is None:
        return None
    try:
        return ctx.list_models()
    except Exception:  # best effort: the 404 is the error to report, not the listing's failure
        return None


def _tries(max_retries: int, exc: BaseException | None = None) -> str:
    if max_retries <= 0:
        return "not retried by the client (max_retries=0)"
    taken = _retries_taken(exc) if exc is not None else None
    count = max_retries if taken is None else taken
    return f"retries exhausted ({count} client retries with backoff)"


def _retries_taken(exc: BaseException) -> int | None:
    # The SDK stamps each attempt with x-stainless-retry-count: the last one says how many it made.
    request = getattr(getattr(exc, "response", None), "request", None)
    value = request.headers.get("x-stainless-retry-count") if request is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _retry_after(exc: BaseException) -> float | None:
    """The delay the server asked for, read as the SDK reads it (retry-after-ms first)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = _header(exc, name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:  # an HTTP date: the SDK honours it; the message just does not quote it
            return None
    return None


def _model(ctx: CallContext) -> str:
    return f"model '{ctx.model}' on " if ctx.model else ""


def _header(exc: BaseException, name: str) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get(name) if headers is not None else None


def _server_message(exc: BaseException) -> str:
    """The server's own words: `error.message` of a JSON body, else the raw text, shortened."""
    body = getattr(exc, "body", None)
    message: Any = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message is None:
            message = body.get("detail") or body.get("message")
    if message is None:
        message = body if isinstance(body, str) else None
    if message is None and body is not None:
        message = json.dumps(body)
    if message is None:
        response = getattr(exc, "response", None)
        try:
            message = response.text if response is not None else ""
        except Exception:  # a streamed or closed response has no text to show
            message = ""
    text = " ".join(str(message).split())
    return text if len(text) <= _MAX_SERVER_MESSAGE else text[: _MAX_SERVER_MESSAGE - 1] + "…"

"""An openai SDK exception turned into our error (see `errors.py`), with a message a user can act on.

The SDK's exception classes are mapped directly (`openai.RateLimitError`, `openai.APITimeoutError`,
...). What the message says about the failure comes from the failure itself: the status, the
server's own message, its request id and Retry-After header; what it says about the SDK's retries
comes from our own settings (`max_retries`) and the SDK's public documentation, never from its
internals. `openai` is imported inside the function, when an SDK exception already exists: importing
the hook (every DAG parse) must not import the SDK.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from typing import Any

from ovh_ai_dagfactory.calls.errors import (
    BadRequestError,
    EndpointConnectionError,
    EndpointNotFoundError,
    EndpointTimeoutError,
    ForbiddenError,
    ModelNotFoundError,
    OVHCloudAIEndpointsError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
    UnauthorizedError,
    UnprocessableEntityError,
)
from ovh_ai_dagfactory.calls.redaction import redact

CATALOG_URL = "https://endpoints.ai.cloud.ovh.net/catalog/"
SDK_RETRIES_DOC = "https://github.com/openai/openai-python#retries"
LIMITS_GUIDE = "OVHcloud's guide 'AI Endpoints - Features, Capabilities and Limitations'"
_MAX_SERVER_MESSAGE = 300  # keep messages readable when a server returns a whole HTML page


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


def from_openai_error(exc: BaseException, ctx: CallContext) -> OVHCloudAIEndpointsError | None:
    """Our error for an openai SDK exception, or None if `exc` is not one we know how to explain."""
    import openai

    error: OVHCloudAIEndpointsError
    if isinstance(exc, openai.APIStatusError):
        error = _from_status(exc, ctx)
    elif isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        error = EndpointTimeoutError(
            f"Timeout: {ctx.operation} on {ctx.base_url} got no answer within {ctx.timeout:g} s, "
            f"{_tries(ctx.max_retries)}. Raise the connection extra 'timeout' (or the hook's `timeout`) "
            "for long generations, or lower max_tokens."
        )
    elif isinstance(exc, openai.APIConnectionError):
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


def _from_status(exc: Any, ctx: CallContext) -> OVHCloudAIEndpointsError:
    """`exc` is an openai.APIStatusError: the endpoint answered with a status that is not 2xx."""
    import openai

    status: int = exc.status_code
    server = ctx.redact(_server_message(exc))
    tail = f" Server said: {server}" if server else ""
    if exc.request_id:
        tail += f" (request id: {exc.request_id})"
    where = f"{ctx.operation} on {ctx.base_url}"

    error: OVHCloudAIEndpointsError
    if isinstance(exc, openai.AuthenticationError):
        error = UnauthorizedError(
            f"{status} Unauthorized: the API token of connection '{ctx.conn_id}' was refused by {where} "
            "(invalid or expired). Verify your token is correct, or create a new one in the OVHcloud "
            f"Control Panel (Public Cloud > AI Endpoints > API keys) and update the connection.{tail}"
        )
    elif isinstance(exc, openai.PermissionDeniedError):
        error = ForbiddenError(
            f"{status} Forbidden: {where} refused the API token of connection '{ctx.conn_id}'. The token "
            "may have been revoked (create a new one), or its Public Cloud project has no payment "
            "method (\"Resource tag 'discovery' is forbidden\": add one in the OVHcloud Control "
            f"Panel).{tail}"
        )
    elif isinstance(exc, openai.NotFoundError):
        error = _not_found(ctx, where, tail)
    elif isinstance(exc, openai.RateLimitError):
        error = _rate_limited(exc, ctx, where, tail)
    elif isinstance(exc, openai.BadRequestError):
        error = BadRequestError(
            f"{status} Bad Request: {where} rejected the request for {_model(ctx)}the parameters. Check "
            f"messages, temperature (0-2), max_tokens and the model's supported features.{tail}"
        )
    elif isinstance(exc, openai.UnprocessableEntityError):
        error = UnprocessableEntityError(
            f"{status} Unprocessable Entity: {where} could not process the request for {_model(ctx)}"
            f"its body. Check the parameter types and values.{tail}"
        )
    elif isinstance(exc, (openai.InternalServerError, openai.ConflictError)) or status == 408:
        error = ServerError(
            f"{status} Server Error: {where} failed, {_tries(ctx.max_retries)}. This is usually "
            f"temporary: task retries will try again later.{tail}"
        )
    else:
        error = RequestRejectedError(
            f"{status} Client Error: {where} rejected the request (a 413 means the request body is "
            f"larger than the endpoint accepts: send fewer or shorter inputs).{tail}"
        )
    error.http_status = status
    return error


def _rate_limited(exc: Any, ctx: CallContext, where: str, tail: str) -> RateLimitError:
    header, value, seconds = _retry_after(exc)
    asked = ""
    if seconds is not None:
        sent_as = f", sent as {header}: {value}" if header != "Retry-After" else ""
        asked = f"; the server asked to wait (Retry-After: {seconds:g} s{sent_as})"
    elif value is not None:
        asked = f"; the server asked to wait until {value} (Retry-After)"
    tries = _tries(ctx.max_retries)
    if ctx.max_retries > 0:
        tries += f", which wait for the server's Retry-After when the SDK deems it reasonable ({SDK_RETRIES_DOC})"
    return RateLimitError(
        f"429 Too Many Requests: rate limit exceeded for {_model(ctx)}{where}, {tries}{asked}. Add task "
        "retries with a retry_delay (e.g. retries=3, retry_delay=timedelta(seconds=30)), lower concurrency "
        f"with a pool, or use a token (anonymous calls get a much lower limit); the limits are in {LIMITS_GUIDE}."
        f"{tail}",
        retry_after=seconds,
    )


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


def _tries(max_retries: int) -> str:
    # What we configured, not what the SDK did: it may stop early (e.g. a long Retry-After).
    if max_retries <= 0:
        return "not retried by the client (max_retries=0)"
    return f"after up to {max_retries} client retries with backoff"


def _retry_after(exc: Any) -> tuple[str | None, str | None, float | None]:
    """The header the server sent to say how long to wait, its value, and that value in seconds
    (None for an HTTP date, which we quote as it is)."""
    headers = exc.response.headers
    for header, divisor in (("retry-after-ms", 1000.0), ("Retry-After", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return header, value, float(value) / divisor
        except ValueError:
            return header, value, None
    return None, None, None


def _model(ctx: CallContext) -> str:
    return f"model '{ctx.model}' on " if ctx.model else ""


def _server_message(exc: Any) -> str:
    """The server's own words: `error.message` of a JSON body, else the raw text, shortened."""
    body = exc.body
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
        try:
            message = exc.response.text
        except Exception:  # a streamed or closed response has no text to show
            message = ""
    text = " ".join(str(message).split())
    return text if len(text) <= _MAX_SERVER_MESSAGE else text[: _MAX_SERVER_MESSAGE - 1] + "…"

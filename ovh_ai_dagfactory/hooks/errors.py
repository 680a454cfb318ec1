"""The provider's error classes, at the path docs/provider.md first gave users.

The code lives in `ovh_ai_dagfactory.calls.errors`; this path is kept so that
`from ovh_ai_dagfactory.hooks.errors import RateLimitError` (and `except` clauses and
`on_failure_callback`s written that way) keep working. The classes are the same objects, so an
error raised by the hook is an instance of the name imported from here. Nothing in the package
imports this module (tests/test_layers.py checks).
"""

from __future__ import annotations

from ovh_ai_dagfactory.calls.errors import (
    ApiKeyNotFoundError,
    BadRequestError,
    EndpointConnectionError,
    EndpointNotFoundError,
    EndpointTimeoutError,
    ForbiddenError,
    IncompatibleResponseError,
    InvalidRequestError,
    ModelNotFoundError,
    NoContentError,
    OVHCloudAIEndpointsError,
    OVHCloudAIEndpointsFatalError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
    StructuredOutputError,
    UnauthorizedError,
    UnexpectedResponseError,
    UnprocessableEntityError,
    api_key_not_found,
)

__all__ = [
    "ApiKeyNotFoundError",
    "BadRequestError",
    "EndpointConnectionError",
    "EndpointNotFoundError",
    "EndpointTimeoutError",
    "ForbiddenError",
    "IncompatibleResponseError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "NoContentError",
    "OVHCloudAIEndpointsError",
    "OVHCloudAIEndpointsFatalError",
    "RateLimitError",
    "RequestRejectedError",
    "ServerError",
    "StructuredOutputError",
    "UnauthorizedError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "api_key_not_found",
]

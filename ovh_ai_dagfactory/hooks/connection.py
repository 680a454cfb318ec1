"""From an Airflow connection to the settings of the openai client: base URL, token, timeout, retries.

Kept apart from the hook so the rules below are read (and tested) in one place.

Base URL, first that applies:
1. extra `base_url`: used as given (a full URL, e.g. `http://localhost:8000/v1`).
2. connection host. It may be a full URL (`https://host/v1`, the JSON/DB form) or a bare name
   (`host`, what the URI form `scheme://:token@host:8443/v1` leaves after Airflow splits it):
   - scheme: the host's own; else `http` for loopback names (local servers rarely have TLS),
     `https` for anything else;
   - port: the host's own; else the connection port, if any;
   - path: the host's own; else the connection schema (the URI form puts the path there); else `/v1`.
3. OVH's unified endpoint `https://oai.endpoints.kepler.ai.cloud.ovh.net/v1`.

Token: the connection password, else extra `api_key`. Extra `anonymous: true` allows no token.
Timeout and max_retries: extras `timeout` / `max_retries` override the hook's arguments.
Extras are also read with Airflow 2's form prefix (`extra__ovhcloud_ai_endpoints__timeout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ovh_ai_dagfactory.provider_info import CONN_TYPE, DEFAULT_BASE_URL

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", "host.docker.internal"}


@dataclass(frozen=True)
class EndpointSettings:
    base_url: str
    api_key: str | None  # None only when anonymous
    anonymous: bool
    timeout: float
    max_retries: int

    def __repr__(self) -> str:  # the token must not reach a log line through a repr
        return (
            f"EndpointSettings(base_url={self.base_url!r}, anonymous={self.anonymous}, "
            f"timeout={self.timeout}, max_retries={self.max_retries})"
        )


def settings_from_connection(conn: Any, *, timeout: float, max_retries: int) -> EndpointSettings:
    extra = conn.extra_dejson or {}
    api_key = conn.password or _extra(extra, "api_key") or None
    return EndpointSettings(
        base_url=base_url_of(conn.host, conn.port, conn.schema, _extra(extra, "base_url")),
        api_key=api_key,
        anonymous=api_key is None and _truthy(_extra(extra, "anonymous")),
        timeout=float(_extra(extra, "timeout", timeout)),
        max_retries=int(_extra(extra, "max_retries", max_retries)),
    )


def base_url_of(host: str | None, port: int | None, schema: str | None, base_url: str | None = None) -> str:
    if base_url:
        return str(base_url).rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    host = host.strip()
    parts = urlsplit(host if "://" in host else f"//{host}")
    hostname = parts.hostname or ""
    scheme = parts.scheme or ("http" if hostname in _LOOPBACK or hostname.startswith("127.") else "https")
    netloc = parts.netloc
    if parts.port is None and port:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if not path:
        path = "/" + schema.strip("/") if schema and schema.strip("/") else "/v1"
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _extra(extra: dict[str, Any], key: str, default: Any = None) -> Any:
    for name in (key, f"extra__{CONN_TYPE}__{key}"):
        value = extra.get(name)
        if value not in (None, ""):
            return value
    return default


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)

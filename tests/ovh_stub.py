"""A small OpenAI-compatible server shaped like OVHcloud AI Endpoints, for what llmock cannot do.

llmock lists only gpt-* models, accepts any model and any token, and does not record headers.
This stub (stdlib only, a real socket on 127.0.0.1) adds:
- OVH's model list on GET /models, and 404 for a model it does not list (an OVH-like body);
- 401 when the bearer token is not the expected one, or anonymous calls refused unless allowed;
- request headers, JSON body and query string recorded, an `x-request-id` on every response;
- scripted answers with any status, body and headers (`fail`, or `respond` for a 2xx that is not
  what the API promises), e.g. 403, a 200 HTML page with `headers={"content-type": "text/html"}`,
  broken JSON as raw `bytes`, a chat answer with `content: null`, or a body echoing the
  Authorization header back (a careless proxy) to prove the hook never repeats the token;
  `model=` scripts only the requests for that model;
- structured output: a chat request with `response_format.type == "json_schema"` is answered with
  JSON made for its schema (objects with their required properties, one-item arrays, "example",
  1, true, an enum's first value); `structured_output("invalid" | "mismatch", times=1)` makes the
  next such answers broken JSON, or JSON whose first leaf has the wrong type / value;
- embeddings at volume (issue 10), all off by default: `limit_rate(rpm, window=60, shape=..., burst=0,
  retry_after_ms=True)` answers 429 with Retry-After (whole seconds) and retry-after-ms (left out
  with `retry_after_ms=False`, as many gateways do) above `rpm` requests per minute, counted in one
  of the shapes of tests/stub_limits.py: "rolling" (the default: a sliding window of `window`
  seconds holding rpm × window / 60 requests), "fixed" (a counter reset at each window boundary)
  or "bucket" (a token bucket of rate rpm / 60 per second and `burst`, nginx limit_req); `latency` seconds per request and `delay(seconds, times)`
  for the next requests only (so a first batch can finish last); `max_input_tokens` (a text over
  it gets a vLLM-like 400 naming the token counts, tokens = words) and `max_body_bytes` (413);
  `dimensions` overrides the vector size (the request's own `dimensions` parameter is honoured
  too); `counts()` gives the requests and the 429s answered.

    with OVHStub(token="secret") as stub:
        stub.base_url            # http://127.0.0.1:PORT/v1
        stub.fail(403, body={...}, times=1)
        stub.respond(200, body=b"<html>", headers={"content-type": "text/html"}, model="BGE-M3")
        stub.structured_output("invalid", times=1, model="gpt-oss-120b")
        stub.requests[-1].headers["authorization"]
        stub.limit_rate(600, window=1.0); stub.latency = 0.05; stub.counts()  # {"requests": .., "429": ..}
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stub_limits import make_limiter, retry_headers

OVH_MODELS = [
    "Meta-Llama-3_3-70B-Instruct",
    "gpt-oss-120b",
    "Mixtral-8x22B-Instruct-v0.1",
    "BGE-M3",
    "bge-multilingual-gemma2",
]
EMBEDDING_DIMENSIONS = {"BGE-M3": 1024, "bge-multilingual-gemma2": 3584}
ECHO_AUTHORIZATION = "<echo authorization>"  # in a scripted body (any string in it): the header received
BROKEN_JSON = '{"answer": "cut short'  # the content of a structured answer told to be "invalid"
STRUCTURED_MODES = ("valid", "invalid", "mismatch")


@dataclass
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any
    query: dict[str, list[str]] = field(default_factory=dict)  # the URL's query string, parsed
    status: int = 0
    request_id: str = ""
    at: float = field(default_factory=time.monotonic)
    answered_at: float = 0.0  # when the answer was ready (after any latency)


@dataclass
class _Fault:
    status: int
    body: Any
    headers: dict[str, str]
    times: int
    model: str | None = None


class OVHStub:
    def __init__(self, *, token: str | None = None, allow_anonymous: bool = False, prefix: str = "/v1") -> None:
        self.token = token
        self.allow_anonymous = allow_anonymous
        self.prefix = prefix.rstrip("/")
        self.requests: list[StubRequest] = []
        self._faults: list[_Fault] = []
        self._structured: list[_Fault] = []  # body = the mode
        self._lock = threading.Lock()
        self._init_volume_settings()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> OVHStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # -- scripting ---------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        model: str | None = None,
    ) -> OVHStub:
        """Answer the next `times` requests (for `model` only, when given) with this status and body.

        A `str` body is sent as text/plain, `bytes` as they are, anything else as JSON; a
        `content-type` in `headers` replaces that default.
        """
        with self._lock:
            self._faults.append(_Fault(status, body, headers or {}, times, model))
        return self

    respond = fail  # the same script, named for a 2xx that is not what the API promises

    def structured_output(self, mode: str, *, times: int = 1, model: str | None = None) -> OVHStub:
        """Answer the next `times` structured chat requests (for `model` only, when given) with
        `mode`: "invalid" (BROKEN_JSON), "mismatch" (JSON whose first leaf violates the schema) or
        "valid" (the default when nothing is scripted)."""
        if mode not in STRUCTURED_MODES:
            raise ValueError(f"mode must be one of {STRUCTURED_MODES}, not {mode!r}")
        with self._lock:
            self._structured.append(_Fault(200, mode, {}, times, model))
        return self

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._structured.clear()
            self.requests.clear()
        self._init_volume_settings()

    # -- embeddings at volume: rate limit, latency, per-text and body limits --------------------

    def _init_volume_settings(self) -> None:
        self.latency = 0.0  # seconds slept before answering any request
        self.max_input_tokens: int | None = None
        self.max_body_bytes: int | None = None
        self.dimensions: int | None = None
        self.record_bodies = True  # a benchmark of 100k texts turns this off
        self._limiter: Any = None  # a limiter of stub_limits, or None: no rate limit
        self._precise_retry = True  # retry-after-ms sent next to Retry-After
        self._delays: list[tuple[float, str | None]] = []
        self._count = 0
        self._rate_limited = 0

    def limit_rate(
        self,
        requests_per_minute: float,
        *,
        window: float = 60.0,
        shape: str = "rolling",
        burst: int = 0,
        retry_after_ms: bool = True,
    ) -> OVHStub:
        """Answer 429 above `requests_per_minute`, counted as `shape` says (tests/stub_limits.py:
        "rolling" and "fixed" hold rpm × window / 60 requests per `window` seconds, "bucket" a token
        every 60/rpm s and `burst` saved). `retry_after_ms=False`: the 429 says Retry-After only."""
        with self._lock:
            self._limiter = make_limiter(shape, requests_per_minute, window, burst)
            self._precise_retry = retry_after_ms
        return self

    def delay(self, seconds: float, *, times: int = 1, containing: str | None = None) -> OVHStub:
        """Answer each of the next `times` requests (whose embedding input holds the text
        `containing`, when given) `seconds` later than the others."""
        with self._lock:
            self._delays.extend([(seconds, containing)] * times)
        return self

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self._count, "429": self._rate_limited}

    def _before_answer(self, length: int, body: Any) -> tuple[int, Any, dict[str, str]] | None:
        """413 over `max_body_bytes`, 429 over the rate limit (at once, as a gateway answers), else
        None after the latency (and any scripted delay) has passed."""
        if self.max_body_bytes is not None and length > self.max_body_bytes:
            with self._lock:
                self._count += 1
            message = f"Request body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes"
            return 413, _error(message, "PayloadTooLarge", 413), {}
        refused = self._throttle()
        if refused is not None:
            return refused
        inputs = body.get("input") if isinstance(body, dict) else None
        texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
        extra = 0.0
        with self._lock:
            for i, (seconds, containing) in enumerate(self._delays):
                if containing is None or containing in texts:
                    extra = seconds
                    del self._delays[i]
                    break
        if self.latency or extra:
            time.sleep(self.latency + extra)
        return None

    def _throttle(self) -> tuple[int, Any, dict[str, str]] | None:
        """The 429 answer when the rate limit is exceeded, else None (the request is counted)."""
        with self._lock:
            self._count += 1
            if self._limiter is None:
                return None
            wait = self._limiter.admit(time.monotonic())
            if wait is None:
                return None
            self._rate_limited += 1
        headers = retry_headers(wait, self._precise_retry)
        return 429, _error("Too many requests, please retry later", "RateLimitError", 429), headers

    def _too_long(self, inputs: Any) -> tuple[int, Any, dict[str, str]] | None:
        """vLLM's (and so OVH's) 400 for an input over the model's context, else None."""
        if self.max_input_tokens is None:
            return None
        for text in [inputs] if isinstance(inputs, str) else list(inputs):
            tokens = len(str(text).split())
            if tokens > self.max_input_tokens:
                message = (
                    f"This model's maximum context length is {self.max_input_tokens} tokens. However, you "
                    f"requested {tokens} tokens in the input for embedding generation. Please reduce the "
                    "length of the input."
                )
                return 400, _error(message, "BadRequestError", 400), {}
        return None

    def _next_fault(self, request: StubRequest, scripts: list[_Fault] | None = None) -> _Fault | None:
        model = request.body.get("model") if isinstance(request.body, dict) else None
        scripts = self._faults if scripts is None else scripts
        with self._lock:
            fault = next((f for f in scripts if f.model is None or f.model == model), None)
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                scripts.remove(fault)
            return fault

    # -- answering ---------------------------------------------------------------------------

    def answer(self, request: StubRequest) -> tuple[int, Any, dict[str, str]]:
        fault = self._next_fault(request)
        if fault is not None:
            return fault.status, _echo(fault.body, request.headers.get("authorization", "")), fault.headers
        auth = request.headers.get("authorization")
        if auth is None and not self.allow_anonymous:
            return 401, _error("Missing Authorization header", "Unauthorized", 401), {}
        if auth is not None and self.token is not None and auth != f"Bearer {self.token}":
            return 401, _error("Invalid or expired token", "Unauthorized", 401), {}
        if not request.path.startswith(self.prefix + "/"):
            return 404, _error(f"Path {request.path} not found", "NotFound", 404), {}
        route = request.path[len(self.prefix) :]
        if request.method == "GET" and route == "/models":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "ovhcloud"} for m in OVH_MODELS]
            return 200, {"object": "list", "data": data}, {}
        if request.method == "POST" and route in ("/chat/completions", "/embeddings"):
            model = (request.body or {}).get("model")
            if model not in OVH_MODELS:
                return 404, _error(f"Model '{model}' does not exist", "NotFoundError", 404), {}
            if route == "/embeddings":
                refused = self._too_long(request.body["input"])
                if refused is not None:
                    return refused
                dims = self.dimensions or request.body.get("dimensions")
                return 200, _embeddings(model, request.body["input"], dims), {}
            response_format = request.body.get("response_format") or {}
            if response_format.get("type") == "json_schema":
                script = self._next_fault(request, self._structured)
                schema = (response_format.get("json_schema") or {}).get("schema") or {}
                content = _structured(schema, script.body if script else "valid")
                return 200, _chat(model, request.body["messages"], content), {}
            return 200, _chat(model, request.body["messages"]), {}
        return 404, _error(f"Path {request.path} not found", "NotFound", 404), {}


def _echo(body: Any, authorization: str) -> Any:
    """`body` with ECHO_AUTHORIZATION replaced by the Authorization header, in any string of it."""
    if isinstance(body, str):
        return body.replace(ECHO_AUTHORIZATION, authorization)
    if isinstance(body, bytes):
        return body.replace(ECHO_AUTHORIZATION.encode(), authorization.encode())
    if isinstance(body, dict):
        return {_echo(key, authorization): _echo(value, authorization) for key, value in body.items()}
    if isinstance(body, list):
        return [_echo(item, authorization) for item in body]
    return body


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": kind, "code": code}


def _chat(model: str, messages: list[dict[str, Any]], content: str | None = None) -> dict[str, Any]:
    last = messages[-1]["content"] if messages else ""
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    content = f"Echo from {model}: {last}" if content is None else content
    completion_tokens = len(content.split())
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _structured(schema: dict[str, Any], mode: str) -> str:
    """The content of a structured answer: JSON valid for `schema`, broken JSON, or a mismatch."""
    if mode == "invalid":
        return BROKEN_JSON
    value = _example(schema)
    return json.dumps(_violate(schema, value) if mode == "mismatch" else value)


def _example(schema: Any) -> Any:
    """A small instance of `schema`: enough of JSON Schema for tests, not a general generator."""
    if not isinstance(schema, dict):
        return "example"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _example(properties.get(name, {})) for name in schema.get("required", list(properties))}
    if kind == "array":
        return [_example(schema.get("items", {})) for _ in range(max(1, schema.get("minItems", 1)))]
    return {"string": "example", "integer": 1, "number": 1, "boolean": True, "null": None}.get(kind, "example")


def _violate(schema: Any, value: Any) -> Any:
    """`value` (made by `_example`) with its first leaf, depth first, replaced by a wrong value."""
    if isinstance(value, dict) and value:
        name = next(iter(value))
        properties = schema.get("properties") or {}
        return {**value, name: _violate(properties.get(name, {}), value[name])}
    if isinstance(value, list) and value:
        return [_violate(schema.get("items", {}), value[0]), *value[1:]]
    if isinstance(schema, dict) and ("enum" in schema or "const" in schema):
        return "not one of the allowed values"
    return ["not", "a", "scalar"] if not isinstance(value, (dict, list)) else 3


# The vector components a digest byte stands for, computed once: a benchmark asks for thousands of
# vectors a second and the stub, not the client, would otherwise be what it measures.
_COMPONENTS = [round((byte - 128) / 128, 4) for byte in range(256)]


def _embeddings(model: str, inputs: str | list[str], dimensions: int | None = None) -> dict[str, Any]:
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    dims = dimensions or EMBEDDING_DIMENSIONS.get(model, 8)
    data = []
    repeats = -(-dims // 32)  # a sha256 digest is 32 bytes, cycled over the dimensions
    for index, text in enumerate(texts):
        seed = [_COMPONENTS[byte] for byte in hashlib.sha256(text.encode()).digest()]
        data.append({"object": "embedding", "index": index, "embedding": (seed * repeats)[:dims]})
    tokens = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class _Server(ThreadingHTTPServer):
    # Many clients connecting at once (a batch runner's workers) must not overflow the listen
    # backlog (5 by default): a dropped SYN costs the client a second before it tries again.
    request_queue_size = 128
    daemon_threads = True


def _handler_for(stub: OVHStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body in one buffered write, flushed at the end of each request, and Nagle
        # off: written separately, the body waited for the client's delayed ACK of the headers
        # (40 ms on Linux), a floor under every request's time that was the stub's, not the client's.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            arrived = time.monotonic()
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            early = stub._before_answer(length, body)
            request = StubRequest(
                method=self.command,
                path=self.path.split("?")[0],
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                query=parse_qs(urlsplit(self.path).query),
                at=arrived,
            )
            with stub._lock:
                stub.requests.append(request)
                request.request_id = f"req-{len(stub.requests):04d}"
            status, payload, headers = early if early is not None else stub.answer(request)
            request.answered_at = time.monotonic()
            if not stub.record_bodies:
                request.body = None  # a benchmark's 100k texts are not kept
            request.status = status
            if isinstance(payload, bytes):
                data, content_type = payload, "application/octet-stream"
            elif isinstance(payload, str):
                data, content_type = payload.encode(), "text/plain"
            else:
                data, content_type = json.dumps(payload).encode(), "application/json"
            headers = {name.lower(): value for name, value in headers.items()}
            self.send_response(status)
            self.send_header("content-type", headers.pop("content-type", content_type))
            self.send_header("content-length", str(len(data)))
            self.send_header("x-request-id", request.request_id)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler

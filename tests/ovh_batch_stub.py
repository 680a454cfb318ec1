"""The OVH-like stub (ovh_stub.OVHStub) with OVH's Batch API: `/v1/files` and `/v1/batches`.

Why not llmock's batch router: it keeps its batches in module globals, finishes them after a fixed
three seconds of wall time, has no `finalizing`, `expired` or scripted failures, and accepts any
token. This subclass adds, on the same server (so the token check, scripted faults, latency and
request recording of OVHStub apply to batch routes too):

- POST /files (multipart, purpose "batch"), GET /files/{id}, GET /files/{id}/content;
- POST /batches, GET /batches/{id}, POST /batches/{id}/cancel, with a completion_window check;
- status progression by polls: each GET of a batch moves it one step along
  validating → in_progress → finalizing → completed (`polls_per_status` GETs per step);
- each request line answered as the synchronous route answers it (an unknown model is a line
  error with the route's 404), output lines shuffled (seeded), failed lines in the error file;
- scripts: `end_next_batch_as("expired" | "failed" | "cancelled")`, `fail_lines({index: status})`
  (a line answered with that status and an OpenAI-like error body, in the error file, or with
  `in_output=True` in the output file, as some servers do),
  `drop_lines({index})` (no line at all), and `cancelled` (ids the stub was asked to cancel).

    with OVHBatchStub(token="secret") as stub:
        stub.end_next_batch_as("expired")
        stub.uploads[-1]["filename"]; stub.batches[batch_id]["status"]; stub.cancelled
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ovh_stub import OVHStub, StubRequest, _error

PROGRESSION = ("validating", "in_progress", "finalizing", "completed")
WINDOWS = ("24h", "48h", "72h")
_BATCH_ROUTE = re.compile(r"^/batches/(?P<id>[^/]+)(?P<cancel>/cancel)?$")
_FILE_ROUTE = re.compile(r"^/files/(?P<id>[^/]+)(?P<content>/content)?$")


class OVHBatchStub(OVHStub):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._batch_lock = threading.Lock()
        self._init_batch_state()

    def _init_batch_state(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []  # every upload: filename, purpose, content (text)
        self.batches: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []
        self.polls_per_status = 1
        self.shuffle_seed: int | None = 7  # None: output lines in input order
        self._next_ending: list[str] = []
        self._failing_lines: dict[int, tuple[int, bool]] = {}
        self._dropped_lines: set[int] = set()

    def reset(self) -> None:
        super().reset()
        with self._batch_lock:
            self._init_batch_state()

    # -- scripting -------------------------------------------------------------------------------

    def end_next_batch_as(self, status: str) -> OVHBatchStub:
        """The next batch created ends as `status` (expired, failed or cancelled) instead of completed."""
        self._next_ending.append(status)
        return self

    def fail_lines(self, statuses: dict[int, int], *, in_output: bool = False) -> OVHBatchStub:
        """Lines (by their position in the uploaded file) answered with these HTTP statuses."""
        self._failing_lines.update({index: (status, in_output) for index, status in statuses.items()})
        return self

    def drop_lines(self, indexes: set[int]) -> OVHBatchStub:
        """Lines for which neither file has anything (a platform losing a request)."""
        self._dropped_lines |= set(indexes)
        return self

    # -- answering -------------------------------------------------------------------------------

    def answer(self, request: StubRequest) -> tuple[int, Any, dict[str, str]]:
        route = request.path[len(self.prefix) :]
        if not (route.startswith("/files") or route.startswith("/batches")):
            return super().answer(request)
        fault = self._next_fault(request)
        if fault is not None:
            return fault.status, fault.body, fault.headers
        auth = request.headers.get("authorization")
        if auth is None or (self.token is not None and auth != f"Bearer {self.token}"):
            # OVH refuses anonymous batch jobs whatever allow_anonymous says
            return 401, _error("Batch API requires a valid token", "Unauthorized", 401), {}
        with self._batch_lock:
            return self._batch_answer(request, route)

    def _batch_answer(self, request: StubRequest, route: str) -> tuple[int, Any, dict[str, str]]:
        if request.method == "POST" and route == "/files":
            return self._upload(request)
        if request.method == "POST" and route == "/batches":
            return self._create(request.body or {})
        match = _FILE_ROUTE.match(route)
        if match and request.method == "GET":
            record = self.files.get(match["id"])
            if record is None:
                return 404, _error(f"File '{match['id']}' not found", "NotFound", 404), {}
            if match["content"]:
                return 200, record["content"].encode(), {"content-type": "application/octet-stream"}
            return 200, _public(record), {}
        match = _BATCH_ROUTE.match(route)
        if match:
            batch = self.batches.get(match["id"])
            if batch is None:
                return 404, _error(f"Batch '{match['id']}' not found", "NotFound", 404), {}
            if match["cancel"] and request.method == "POST":
                self.cancelled.append(batch["id"])
                if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                    batch["status"], batch["_plan"] = "cancelling", ["cancelled"]
                return 200, _public(batch), {}
            if request.method == "GET":
                self._advance(batch)
                return 200, _public(batch), {}
        return 404, _error(f"Path {request.path} not found", "NotFound", 404), {}

    def _upload(self, request: StubRequest) -> tuple[int, Any, dict[str, str]]:
        fields = _multipart(request.headers.get("content-type", ""), request.body)
        purpose, upload = fields.get("purpose"), fields.get("file")
        if purpose != "batch" or upload is None:
            return 400, _error("A batch file needs purpose 'batch' and a file", "BadRequestError", 400), {}
        filename, content = upload
        file_id = f"file-{len(self.files) + 1:04d}"
        record = _file(file_id, filename, content, "batch")
        self.files[file_id] = record
        self.uploads.append({"id": file_id, "filename": filename, "purpose": purpose, "content": content})
        return 200, _public(record), {}

    def _create(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if body.get("completion_window") not in WINDOWS:
            message = f"completion_window must be one of {', '.join(WINDOWS)}"
            return 400, _error(message, "BadRequestError", 400), {}
        if body.get("input_file_id") not in self.files:
            return 400, _error(f"File '{body.get('input_file_id')}' not found", "BadRequestError", 400), {}
        batch_id = f"batch_{len(self.batches) + 1:04d}"
        ending = self._next_ending.pop(0) if self._next_ending else "completed"
        plan = [status for status in PROGRESSION[1:] for _ in range(self.polls_per_status)]
        if ending != "completed":
            plan = plan[: self.polls_per_status] + [ending]
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "errors": None,
            "_plan": [*["validating"] * (self.polls_per_status - 1), *plan],
        }
        self.batches[batch_id] = batch
        return 200, _public(batch), {}

    def _advance(self, batch: dict[str, Any]) -> None:
        if not batch["_plan"]:
            return
        batch["status"] = batch["_plan"].pop(0)
        if batch["status"] == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "Model not available for batch", "line": 1}],
            }
        if batch["status"] == "completed":
            self._run_lines(batch)

    def _run_lines(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]]["content"].splitlines() if line]
        outputs, errors = [], []
        for index, line in enumerate(lines):
            if index in self._dropped_lines:
                continue
            status, body = self._line_answer(index, line)
            record: dict[str, Any] = {"id": f"batch_req_{index}", "custom_id": line["custom_id"]}
            # As OpenAI writes them: a refused request keeps its HTTP response, in the error file.
            body = body if 200 <= status < 300 else {"error": body}
            record |= {"response": {"status_code": status, "request_id": f"r{index}", "body": body}, "error": None}
            in_output = 200 <= status < 300 or self._failing_lines.get(index, (0, False))[1]
            (outputs if in_output else errors).append(record)
        if self.shuffle_seed is not None:
            random.Random(self.shuffle_seed).shuffle(outputs)
        for records, key in ((outputs, "output_file_id"), (errors, "error_file_id")):
            if records:
                file_id = f"file-{len(self.files) + 1:04d}"
                text = "".join(json.dumps(record) + "\n" for record in records)
                self.files[file_id] = _file(file_id, f"{batch['id']}_{key[:-8]}.jsonl", text, "batch_output")
                batch[key] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}

    def _line_answer(self, index: int, line: dict[str, Any]) -> tuple[int, Any]:
        if index in self._failing_lines:
            status = self._failing_lines[index][0]
            return status, _error(f"Line {index} refused by the stub", "BadRequestError", status)
        url = str(line.get("url", ""))
        path = self.prefix + (url[3:] if url.startswith("/v1/") else url)
        headers = {"authorization": f"Bearer {self.token}"}
        inner = StubRequest(method="POST", path=path, headers=headers, body=line.get("body"))
        status, body, _ = OVHStub.answer(self, inner)
        return status, body


def _file(file_id: str, filename: str, content: str, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(content.encode()),
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "content": content,
    }


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if not key.startswith("_") and key != "content"}


def _multipart(content_type: str, body: Any) -> dict[str, Any]:
    """The fields of a multipart/form-data body (OVHStub hands a non-JSON body over as text)."""
    raw = body.encode() if isinstance(body, str) else bytes(body or b"")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        fields[str(name)] = (filename, payload.decode()) if filename is not None else payload.decode()
    return fields

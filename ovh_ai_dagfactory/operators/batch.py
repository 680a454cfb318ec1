"""OVHCloudAIEndpointsBatchOperator: many chat completions or embeddings as one batch job, at OVH's
batch price and outside the per-minute rate limit, waiting in the triggerer rather than a worker.

    execute           token check, JSONL built and uploaded, batch created, then defer (or poll here)
    trigger           OVHCloudAIEndpointsBatchTrigger polls with backoff until a final status
    execute_complete  output and error files downloaded, lines mapped back to input order, XCom

What goes to XCom is what the synchronous operators return, so a downstream task reads a batch step
as it reads a synchronous one:

    kind="chat"       return_value: [chat completion response dict, ...] in input order
    kind="embedding"  return_value: one embeddings response dict, data[i].index = the input's index
    key "batch_id"    the batch id, pushed as soon as the batch exists (to find it on the console)
    key "batch"       {"id", "status", "request_counts", "output_file_id", ...} once it has ended
    key "failed"      on_line_error="report" only: [{"index", "custom_id", "status_code", "error"}]

With `on_line_error="report"` a failed line's place is None in the chat list and absent from the
embeddings' `data`; with "fail" (the default) any failed line fails the task
(`BatchLinesFailedError`), after the results were logged as counts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ovh_ai_dagfactory.batch_api.errors import batch_ended_error, lines_failed_error
from ovh_ai_dagfactory.batch_api.files import (
    BATCH_URLS,
    BatchResults,
    chat_responses,
    custom_ids_for,
    embedding_response,
    read_results,
    request_file,
)
from ovh_ai_dagfactory.batch_api.polling import BatchWait
from ovh_ai_dagfactory.calls.errors import InvalidRequestError, OVHCloudAIEndpointsError
from ovh_ai_dagfactory.calls.parameters import CHAT_PARAMETERS
from ovh_ai_dagfactory.compat import BaseOperator, Context
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.hooks.batch import (
    OVHCloudAIEndpointsBatchHook,
    check_completion_window,
    window_seconds,
)

DEFAULT_COMPLETION_WINDOW = "24h"
ON_LINE_ERROR = ("fail", "report")
#: How long past its completion window a batch is waited for before it is cancelled: the platform
#: should have marked it expired by then; a batch it forgot must not hold the task forever.
DEADLINE_GRACE = 3600.0
_OWN_ARGUMENTS = ("model", "messages", "input", *CHAT_PARAMETERS)
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class OVHCloudAIEndpointsBatchOperator(BaseOperator):
    """Run chat completions or embeddings for a list of inputs as one OVHcloud AI Endpoints batch job.

    :param kind: "chat" (each input a list of messages) or "embedding" (each input a text).
    :param model: model name (templated).
    :param inputs: the list of inputs (templated): message lists for chat, strings for embeddings.
    :param custom_ids: one unique string per input, used as the line's `custom_id` (templated);
        default: the input's index.
    :param temperature: chat only; `max_tokens`, `top_p`, `stop` likewise. Sent only when set.
    :param request_kwargs: any other body parameter of each request (`seed`, `response_format`,
        `dimensions`, ...; the SDK's `extra_body` is merged in) (templated).
    :param completion_window: "24h" (default), "48h" or "72h".
    :param on_line_error: "fail" (default): a failed line fails the task; "report": keep the
        successes, push the failures to XCom key "failed".
    :param deferrable: wait in the triggerer (default); False polls in the worker.
    :param poll_interval: seconds between the first polls, growing by half each poll (default 60).
    :param max_poll_interval: the largest interval between polls (default 600).
    :param ovh_conn_id: Airflow connection id (templated); it must have a token.
    """

    template_fields: Sequence[str] = ("model", "inputs", "custom_ids", "request_kwargs", "ovh_conn_id")
    template_fields_renderers = {"inputs": "json", "custom_ids": "json", "request_kwargs": "json"}
    ui_color = "#efe3fc"

    def __init__(
        self,
        *,
        kind: str,
        model: str,
        inputs: list[Any] | str,
        custom_ids: list[str] | str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        request_kwargs: dict[str, Any] | str | None = None,
        completion_window: str = DEFAULT_COMPLETION_WINDOW,
        on_line_error: str = "fail",
        deferrable: bool = True,
        poll_interval: float = 60.0,
        max_poll_interval: float = 600.0,
        ovh_conn_id: str = OVHCloudAIEndpointsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.model = model
        self.inputs = inputs
        self.custom_ids = custom_ids
        self.chat_parameters = dict(zip(CHAT_PARAMETERS, (temperature, max_tokens, top_p, stop), strict=True))
        self.request_kwargs = request_kwargs
        self.completion_window = completion_window
        self.on_line_error = on_line_error
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.ovh_conn_id = ovh_conn_id
        self.batch_id: str | None = None
        # Refused when the DAG is parsed (an import error), not hours later in a failed task.
        if kind not in BATCH_URLS:
            raise InvalidRequestError(f"Invalid request: kind must be 'chat' or 'embedding', not {kind!r}.")
        if kind != "chat" and any(value is not None for value in self.chat_parameters.values()):
            raise InvalidRequestError(f"Invalid request: {_listed(CHAT_PARAMETERS)} are for kind='chat'.")
        check_completion_window(completion_window)
        if on_line_error not in ON_LINE_ERROR:
            raise InvalidRequestError(
                f"Invalid request: on_line_error must be 'fail' or 'report', not {on_line_error!r}."
            )
        if not isinstance(request_kwargs, str):
            _request_parameters(request_kwargs)

    @cached_property
    def hook(self) -> OVHCloudAIEndpointsBatchHook:
        return OVHCloudAIEndpointsBatchHook(ovh_conn_id=self.ovh_conn_id)

    # -- submit ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        self.hook.require_token()  # before anything is built or uploaded: OVH refuses anonymous batches
        inputs = self._rendered_inputs()
        if not inputs:
            self.log.info("No inputs: no batch job is submitted")
            return self._result(BatchResults([]), context, {"status": "completed", "request_counts": {}})
        custom_ids = custom_ids_for(len(inputs), self._rendered_custom_ids())
        params = {**_request_parameters(self.request_kwargs), **self.chat_parameters}
        if self.kind == "embedding":
            params.setdefault("encoding_format", "float")  # what the synchronous operator asks for
        content = request_file(self.kind, self.model, inputs, params, custom_ids)
        file_id = self.hook.upload_batch_file(batch_file_name(context), content)
        batch = self.hook.create_batch(file_id, self.kind, self.completion_window)
        self.batch_id = str(batch["id"])
        context["ti"].xcom_push(key="batch_id", value=self.batch_id)
        self.log.info(
            "Batch %s submitted: %d %s request(s) of model %s (file %s, %d bytes, completion window %s)",
            self.batch_id,
            len(inputs),
            self.kind,
            self.model,
            file_id,
            len(content),
            self.completion_window,
        )
        deadline = time.time() + window_seconds(self.completion_window) + DEADLINE_GRACE
        if self.deferrable:
            from ovh_ai_dagfactory.triggers.batch import OVHCloudAIEndpointsBatchTrigger

            self.defer(
                trigger=OVHCloudAIEndpointsBatchTrigger(
                    batch_id=self.batch_id,
                    ovh_conn_id=self.ovh_conn_id,
                    deadline=deadline,
                    poll_interval=self.poll_interval,
                    max_poll_interval=self.max_poll_interval,
                ),
                method_name="execute_complete",
                kwargs={"count": len(inputs)},
            )
        return self._complete(context, self._wait_in_worker(deadline), len(inputs))

    # -- wait ------------------------------------------------------------------------------------

    def _wait_in_worker(self, deadline: float) -> dict[str, Any]:
        """Poll as the trigger does, holding this worker slot (deferrable=False)."""
        assert self.batch_id is not None
        wait = BatchWait(
            self.batch_id,
            deadline=deadline,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            log=self.log,
        )
        while True:
            answer: dict[str, Any] | OVHCloudAIEndpointsError
            try:
                answer = self.hook.retrieve_batch(self.batch_id)
            except OVHCloudAIEndpointsError as error:
                answer = error
            if (event := wait.after_poll(answer)) is not None:
                if event["status"] == "timeout":
                    self.on_kill()
                return event
            time.sleep(wait.pause())

    def execute_complete(self, context: Context, event: dict[str, Any], count: int | None = None) -> Any:
        """Resumed from the trigger: the batch has ended (or the wait failed)."""
        self.batch_id = str(event.get("batch_id"))
        if count is None:
            count = len(self._rendered_inputs())
        return self._complete(context, event, count)

    # -- results ---------------------------------------------------------------------------------

    def _complete(self, context: Context, event: dict[str, Any], count: int) -> Any:
        from ovh_ai_dagfactory.triggers.batch import error_from_payload

        batch_id, status = str(event.get("batch_id")), str(event.get("status"))
        if status == "error":
            raise error_from_payload(event.get("error") or {})
        batch = dict(event.get("batch") or {})
        context["ti"].xcom_push(key="batch", value={**batch, "id": batch_id, "status": status})
        if status != "completed":
            raise batch_ended_error(batch_id, status, _reason(batch))
        secrets = [self.hook.require_token().api_key or ""]
        output = self.hook.file_text(batch["output_file_id"]) if batch.get("output_file_id") else None
        errors = self.hook.file_text(batch["error_file_id"]) if batch.get("error_file_id") else None
        custom_ids = custom_ids_for(count, self._rendered_custom_ids())
        results = read_results(output, errors, custom_ids, kind=self.kind, batch_id=batch_id, secrets=secrets)
        self.batch_id = None  # ended: nothing left for on_kill to cancel
        return self._result(results, context, batch)

    def _result(self, results: BatchResults, context: Context, batch: dict[str, Any]) -> Any:
        answered = [body for body in results.responses if body is not None]
        usage = [body.get("usage") or {} for body in answered]
        self.log.info(
            "Batch results: %d succeeded, %d failed; usage: prompt_tokens=%d completion_tokens=%d total_tokens=%d",
            len(answered),
            len(results.failures),
            sum(int(u.get("prompt_tokens") or 0) for u in usage),
            sum(int(u.get("completion_tokens") or 0) for u in usage),
            sum(int(u.get("total_tokens") or 0) for u in usage),
        )
        failures = [failure.as_dict() for failure in results.failures]
        if failures and self.on_line_error == "fail":
            raise lines_failed_error(str(batch.get("id")), failures, len(results.responses))
        if self.on_line_error == "report":
            for failure in failures[:5]:
                self.log.warning("Batch line %(index)s (custom_id %(custom_id)r) failed: %(error)s", failure)
            context["ti"].xcom_push(key="failed", value=failures)
        if self.kind == "chat":
            return chat_responses(results)
        return embedding_response(results, self.model)

    def on_kill(self) -> None:
        """Cancel the batch this task submitted and still waits for (in the worker)."""
        if not self.batch_id:
            return
        try:
            self.hook.cancel_batch(self.batch_id)
            self.log.info("Cancelled batch %s", self.batch_id)
        except OVHCloudAIEndpointsError as error:
            self.log.warning("Could not cancel batch %s: %s", self.batch_id, error)

    # -- helpers ---------------------------------------------------------------------------------

    def _rendered_inputs(self) -> list[Any]:
        if not isinstance(self.inputs, list):
            raise InvalidRequestError(
                f"Invalid request: inputs must be a list, not {type(self.inputs).__name__} {str(self.inputs)[:80]!r}. "
                "A template that renders the whole list needs the DAG's render_template_as_native_obj=True."
            )
        return self.inputs

    def _rendered_custom_ids(self) -> list[str] | None:
        if self.custom_ids is not None and not isinstance(self.custom_ids, list):
            raise InvalidRequestError("Invalid request: custom_ids must be a list of strings (one per input).")
        return self.custom_ids


def batch_file_name(context: Context) -> str:
    """The uploaded file's name, made of the dag, task and run ids (never of anything secret), so a
    file on the provider's console says which task run it belongs to."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    parts = [ti.dag_id, ti.task_id, ti.run_id] + ([str(map_index)] if map_index not in (None, -1) else [])
    name = _UNSAFE_IN_NAME.sub("_", "__".join(str(part) for part in parts)).strip("._")
    return f"{name[:200] or 'batch'}.jsonl"


def _request_parameters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid request: request_kwargs must be a dict of request parameters, not {type(value).__name__}."
        )
    repeated = [key for key in value if key in _OWN_ARGUMENTS]
    if repeated:
        raise InvalidRequestError(
            f"Invalid request: request_kwargs sets {', '.join(map(repr, repeated))}, which the operator takes "
            f"as its own argument (model, inputs, {', '.join(CHAT_PARAMETERS)}): pass it there."
        )
    return dict(value)


def _listed(names: Sequence[str]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _reason(batch: dict[str, Any]) -> str:
    errors = (batch.get("errors") or {}).get("data") if isinstance(batch.get("errors"), dict) else None
    if errors:
        first = errors[0]
        line = f" (line {first.get('line')})" if first.get("line") is not None else ""
        return f": {first.get('message')}{line}"
    counts = batch.get("request_counts")
    return f" (requests: {counts})" if counts else ""


__all__ = ["OVHCloudAIEndpointsBatchOperator", "batch_file_name"]

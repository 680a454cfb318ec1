"""OVHCloudAIEndpointsBatchTrigger: waits in Airflow's triggerer for a batch job to reach a final state.

It polls `GET /batches/{id}` with the async openai client, starting every `poll_interval` seconds
and backing off by half again each time up to `max_poll_interval` (a batch takes minutes to hours:
early polls catch small jobs, later ones cost little). It fires one event, then the operator resumes
on a worker (`execute_complete`) to download the results:

    {"status": "completed" | "failed" | "expired" | "cancelled", "batch_id": ..., "batch": {...}}
    {"status": "timeout", ...}   the deadline passed first; the batch is cancelled
    {"status": "error", "batch_id": ..., "error": {"class", "message", "attributes"}}   polling failed

Its serialized kwargs hold the connection id, never the token: the trigger reads the connection
itself, in the triggerer (through the task SDK's supervisor on Airflow 3, in a thread on 2.11).
What to do with each poll's outcome (backoff, transient errors, deadline) is decided by
`batch_api/polling.BatchWait`, which the operator's `deferrable=False` wait shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ovh_ai_dagfactory.batch_api.polling import BatchWait
from ovh_ai_dagfactory.calls.errors import OVHCloudAIEndpointsError
from ovh_ai_dagfactory.compat import BaseTrigger, TriggerEvent
from ovh_ai_dagfactory.hooks.batch import OVHCloudAIEndpointsBatchHook


class OVHCloudAIEndpointsBatchTrigger(BaseTrigger):
    """Wait for batch `batch_id` of connection `ovh_conn_id`.

    :param deadline: UNIX time after which the wait ends with a `timeout` event (an absolute time, so
        that a triggerer restart does not extend the wait).
    :param poll_interval: seconds before the first poll after the previous one; grows by half each
        poll up to `max_poll_interval`.
    """

    def __init__(
        self,
        *,
        batch_id: str,
        ovh_conn_id: str,
        deadline: float,
        poll_interval: float = 60.0,
        max_poll_interval: float = 600.0,
    ) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.ovh_conn_id = ovh_conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_id": self.batch_id,
                "ovh_conn_id": self.ovh_conn_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OVHCloudAIEndpointsBatchHook(ovh_conn_id=self.ovh_conn_id)
        try:
            await hook.aload_settings()
            async with hook.get_async_conn() as client:
                event = await self._wait(hook, client)
        except OVHCloudAIEndpointsError as error:
            event = {"status": "error", "batch_id": self.batch_id, "error": error_payload(error)}
        yield TriggerEvent(event)

    async def _wait(self, hook: OVHCloudAIEndpointsBatchHook, client: Any) -> dict[str, Any]:
        wait = BatchWait(
            self.batch_id,
            deadline=self.deadline,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            log=self.log,
        )
        while True:
            answer: dict[str, Any] | OVHCloudAIEndpointsError
            try:
                answer = await hook.aretrieve_batch(self.batch_id, client)
            except OVHCloudAIEndpointsError as error:
                answer = error
            if (event := wait.after_poll(answer)) is not None:
                if event["status"] == "timeout":
                    await self._cancel(hook, client)
                return event
            await asyncio.sleep(wait.pause())

    async def on_kill(self) -> None:
        # Airflow 3.3+: the user marked the deferred task failed/succeeded or cleared it.
        hook = OVHCloudAIEndpointsBatchHook(ovh_conn_id=self.ovh_conn_id)
        await hook.aload_settings()
        async with hook.get_async_conn() as client:
            await self._cancel(hook, client)

    async def _cancel(self, hook: OVHCloudAIEndpointsBatchHook, client: Any) -> None:
        try:
            await hook.acancel_batch(self.batch_id, client)
            self.log.info("Cancelled batch %s", self.batch_id)
        except OVHCloudAIEndpointsError as error:
            self.log.warning("Could not cancel batch %s: %s", self.batch_id, error)


def error_payload(error: OVHCloudAIEndpointsError) -> dict[str, Any]:
    """An error of ours as plain JSON, for a trigger event (rebuilt by `error_from_payload`)."""
    classpath, args, attributes = error.serialize()
    return {"class": classpath, "message": str(args[0]) if args else str(error), "attributes": attributes}


def error_from_payload(payload: dict[str, Any]) -> OVHCloudAIEndpointsError:
    """The error a trigger event carries, rebuilt with its class when that class is ours."""
    import importlib

    module_name, _, name = str(payload.get("class", "")).rpartition(".")
    cls: Any = OVHCloudAIEndpointsError
    if module_name.startswith("ovh_ai_dagfactory."):
        found = getattr(importlib.import_module(module_name), name, None)
        if isinstance(found, type) and issubclass(found, OVHCloudAIEndpointsError):
            cls = found
    return cls(str(payload.get("message", "")), **dict(payload.get("attributes") or {}))  # type: ignore[no-any-return]

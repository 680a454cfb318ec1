"""OVHCloudAIEndpointsBatchHook: the Batch API calls (`/v1/files`, `/v1/batches`) on the hook's
connection, client and error translation.

    require_token()                                  BatchAnonymousError for an anonymous connection
    upload_batch_file(name, content) -> file id      POST /files (purpose "batch")
    create_batch(file_id, kind, window) -> batch     POST /batches
    retrieve_batch(id) / cancel_batch(id) -> batch   GET /batches/{id}, POST /batches/{id}/cancel
    file_text(file_id) -> str                        GET /files/{id}/content
    aload_settings(); aretrieve_batch(id); acancel_batch(id)   the same from a trigger (AsyncOpenAI)

Batch and file objects are returned as their wire JSON (dicts), with the token redacted, like every
answer of the hook. Batch jobs need a token (OVH refuses anonymous ones), so every call here checks
that first: nothing is uploaded for an anonymous connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ovh_ai_dagfactory.batch_api.errors import anonymous_batch_error
from ovh_ai_dagfactory.batch_api.files import BATCH_URLS
from ovh_ai_dagfactory.calls.errors import InvalidRequestError, api_key_not_found
from ovh_ai_dagfactory.calls.redaction import redact
from ovh_ai_dagfactory.compat import AirflowNotFoundException, aget_connection
from ovh_ai_dagfactory.hooks.ai_endpoints import OVHCloudAIEndpointsHook
from ovh_ai_dagfactory.hooks.connection import EndpointSettings

if TYPE_CHECKING:
    import openai

COMPLETION_WINDOWS = ("24h", "48h", "72h")


class OVHCloudAIEndpointsBatchHook(OVHCloudAIEndpointsHook):
    """The hook, plus batch jobs. Same connection and arguments as `OVHCloudAIEndpointsHook`."""

    _prefetched_connection: Any = None

    # -- settings --------------------------------------------------------------------------------

    def require_token(self) -> EndpointSettings:
        """The connection's settings, or `BatchAnonymousError` when it has no token."""
        settings = self.settings
        if settings.anonymous or not settings.api_key:
            raise anonymous_batch_error(self.ovh_conn_id)
        return settings

    async def aload_settings(self) -> EndpointSettings:
        """`require_token()` for a trigger: the connection is read without blocking the event loop."""
        if self._settings is None and self._prefetched_connection is None:
            try:
                self._prefetched_connection = await aget_connection(self.ovh_conn_id)
            except AirflowNotFoundException:
                raise api_key_not_found(self.ovh_conn_id, conn_exists=False) from None
        return self.require_token()

    def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
        # The hook's `settings` reads the connection synchronously; a trigger has read it already.
        if self._prefetched_connection is not None and conn_id == self.ovh_conn_id:
            return self._prefetched_connection
        return super().get_connection(conn_id)

    # -- worker side (sync client) ---------------------------------------------------------------

    def upload_batch_file(self, name: str, content: bytes) -> str:
        """Upload a JSONL request file (purpose "batch") under `name`; returns the file id."""
        self.require_token()
        client = self.get_conn()
        with self._translated_errors("batch file upload", None):
            raw = client.files.with_raw_response.create(file=(name, content, "application/jsonl"), purpose="batch")
        return str(self._parsed(raw, "batch file upload", None)["id"])

    def create_batch(self, input_file_id: str, kind: str, completion_window: str) -> dict[str, Any]:
        """Create the batch job of an uploaded file; `kind` is "chat" or "embedding"."""
        self.require_token()
        check_completion_window(completion_window)
        client = self.get_conn()
        with self._translated_errors("batch creation", None):
            raw = client.batches.with_raw_response.create(
                input_file_id=input_file_id,
                endpoint=BATCH_URLS[kind],  # type: ignore[arg-type]
                completion_window=completion_window,  # type: ignore[arg-type]
            )
        return self._parsed(raw, "batch creation", None)

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        self.require_token()
        with self._translated_errors("batch status", None):
            raw = self.get_conn().batches.with_raw_response.retrieve(batch_id)
        return self._parsed(raw, "batch status", None)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        self.require_token()
        with self._translated_errors("batch cancellation", None):
            raw = self.get_conn().batches.with_raw_response.cancel(batch_id)
        return self._parsed(raw, "batch cancellation", None)

    def file_text(self, file_id: str) -> str:
        """The content of a result file (JSONL text), with the token redacted should a server echo it."""
        self.require_token()
        with self._translated_errors("batch file download", None):
            raw = self.get_conn().files.with_raw_response.content(file_id)
        return redact(raw.text, [self.settings.api_key or ""])

    # -- trigger side (async client) -------------------------------------------------------------

    async def aretrieve_batch(self, batch_id: str, client: openai.AsyncOpenAI) -> dict[str, Any]:
        await self.aload_settings()
        with self._translated_errors("batch status", None):
            raw = await client.batches.with_raw_response.retrieve(batch_id)
        return self._parsed(raw, "batch status", None)

    async def acancel_batch(self, batch_id: str, client: openai.AsyncOpenAI) -> dict[str, Any]:
        await self.aload_settings()
        with self._translated_errors("batch cancellation", None):
            raw = await client.batches.with_raw_response.cancel(batch_id)
        return self._parsed(raw, "batch cancellation", None)


def check_completion_window(completion_window: str) -> None:
    if completion_window not in COMPLETION_WINDOWS:
        raise InvalidRequestError(
            f"Invalid request: completion_window must be one of {', '.join(COMPLETION_WINDOWS)} (the windows "
            f"OVHcloud AI Endpoints offers), not {completion_window!r}."
        )


def window_seconds(completion_window: str) -> int:
    return int(completion_window.rstrip("h")) * 3600

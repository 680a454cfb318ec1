"""The hook's methods that run many requests as one job of `jobs/`: embeddings at volume
(`embed_texts`, `embed_to_storage`) and chat at volume (`chat_items`). A mixin of
`OVHCloudAIEndpointsHook`, kept apart so the hook's module holds the connection, the client and one
call's path; these hand a job the connection as a `jobs.runner.Endpoint` and the job does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ovh_ai_dagfactory.calls.parameters import chat_parameters, embedding_parameters, json_schema_response_format
from ovh_ai_dagfactory.jobs import chat, embeddings
from ovh_ai_dagfactory.jobs.batches import DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES
from ovh_ai_dagfactory.jobs.runner import DEFAULT_MAX_CONCURRENCY, Endpoint
from ovh_ai_dagfactory.provider_info import (
    DEFAULT_CHAT_JOB_CONCURRENCY,
    DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION,
    DEFAULT_CHAT_JOB_ON_ITEM_ERROR,
    DEFAULT_CHAT_JOB_PART_SIZE,
    DEFAULT_REQUESTS_PER_MINUTE,
)

if TYPE_CHECKING:
    import openai


class _Hook(Protocol):
    """What these methods use of the hook they are mixed into."""

    def get_conn(self) -> openai.OpenAI: ...
    def create_embedding(self, model: str, input: str | list[str], **kwargs: Any) -> dict[str, Any]: ...  # noqa: A002
    def embedding_sender(self, model: str, params: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]: ...
    def _job_endpoint(self, sender: Callable[[], Callable[[Any], dict[str, Any]]]) -> Endpoint: ...
    def _chat_sender(
        self, client: openai.OpenAI, model: str, params: dict[str, Any]
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]: ...


class JobMethods:
    """`embed_texts`, `embed_to_storage` and `chat_items` of `OVHCloudAIEndpointsHook`."""

    def embed_texts(
        self: _Hook,
        model: str,
        input: str | Iterable[str],  # noqa: A002
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        requests_per_minute: float | None = DEFAULT_REQUESTS_PER_MINUTE,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_result_bytes: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Embed any number of texts; returns one response shaped as `create_embedding`'s, with
        `data[i].index` the index in `input` and `usage` summed over the requests.

        An input that fits in one request (one text, or at most `batch_size` texts under
        `max_request_bytes`) is sent as `create_embedding` sends it. A larger one is split into
        requests of at most `batch_size` texts under `max_request_bytes`, `max_concurrency` in
        flight, paced to `requests_per_minute` (None: no pacing), paused together on 429 and
        retried per batch (see `jobs/runner.py`), with a progress line every 10 s.

        :param max_result_bytes: refuse (`EmbeddingsTooLargeError`, after the first batch) a
            result whose vectors would take more than this many bytes as JSON; None: no limit.
        """
        params = embedding_parameters(kwargs)
        texts = embeddings.one_request_or_texts(
            model, input, params, batch_size=batch_size, max_request_bytes=max_request_bytes
        )
        if isinstance(texts, embeddings.OneRequest):
            # One request, exactly as before batching existed: same body, same SDK retries.
            response = self.create_embedding(model, texts.input, **params)
            embeddings.check_response_size(response, texts.count, max_result_bytes)
            return response
        return embeddings.embed_texts(
            self._job_endpoint(lambda: self.embedding_sender(model, params)),
            model,
            texts,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            max_request_bytes=max_request_bytes,
            max_result_bytes=max_result_bytes,
            params=params,
        )

    def embed_to_storage(
        self: _Hook,
        model: str,
        output: str,
        *,
        input: str | list[str] | None = None,  # noqa: A002
        input_file: str | None = None,
        text_field: str = "text",
        id_field: str | None = None,
        input_conn_id: str | None = None,
        output_conn_id: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        requests_per_minute: float | None = DEFAULT_REQUESTS_PER_MINUTE,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Embed `input` (texts) or `input_file` (a JSON Lines or .txt URI, read as a stream) into
        parts under `output` (a directory URI), batched as `embed_texts` does; returns the manifest
        (output, format, parts, count, dimensions, model, usage, duration_seconds, resumed_parts,
        requests, retries, rate_limited), also written as `manifest.json`.

        URIs are Airflow ObjectStoragePaths (file://, s3://, gcs://...), with the Airflow
        connections `input_conn_id` / `output_conn_id`. Memory stays flat: at most
        `max_concurrency` batches are held. A retry of the same job keeps the parts already written
        (see `jobs/storage.py`).
        """
        params = embedding_parameters(kwargs)
        return embeddings.embed_to_storage(
            self._job_endpoint(lambda: self.embedding_sender(model, params)),
            model,
            output=output,
            output_conn_id=output_conn_id,
            input=input,
            input_file=input_file,
            text_field=text_field,
            id_field=id_field,
            input_conn_id=input_conn_id,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            max_request_bytes=max_request_bytes,
            params=params,
        )

    def chat_items(
        self: _Hook,
        model: str,
        items: Iterable[Any] | None,
        render: chat.Render,
        *,
        input_file: str | None = None,
        input_conn_id: str | None = None,
        id_field: str | None = "id",
        output: str | None = None,
        output_conn_id: str | None = None,
        part_size: int = DEFAULT_CHAT_JOB_PART_SIZE,
        max_concurrency: int = DEFAULT_CHAT_JOB_CONCURRENCY,
        requests_per_minute: float | None = DEFAULT_REQUESTS_PER_MINUTE,
        on_item_error: str = DEFAULT_CHAT_JOB_ON_ITEM_ERROR,
        max_failed_fraction: float = DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION,
        max_result_bytes: int | None = None,
        output_schema: dict[str, Any] | None = None,
        output_schema_name: str = "output",
        render_source: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Chat at volume: one chat completion per item of `items` (a list) or `input_file` (JSON Lines
        or .txt URI), its messages `render(item, item_index)`, run by the job runner. With `output`
        (a directory URI) returns the manifest, the rows in parts of `part_size` items (resumable);
        without, `{"object": "list", "data": [rows], "model", "usage", "failed"}` (refused over
        `max_result_bytes`). `render_source` (the templates) is hashed into `_job.json`; `kwargs`
        are `chat_completion`'s. Rows, errors policy, resume: `jobs/chat.py`, docs/provider.md.
        """
        params = chat_parameters(**kwargs)
        if output_schema is not None:
            params["response_format"] = json_schema_response_format(output_schema_name, output_schema)
        return chat.chat_items(
            self._job_endpoint(lambda: self._chat_sender(self.get_conn().with_options(max_retries=0), model, params)),
            model,
            items=items,
            input_file=input_file,
            input_conn_id=input_conn_id,
            id_field=id_field,
            render=render,
            render_source=render_source,
            output=output,
            output_conn_id=output_conn_id,
            part_size=part_size,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            on_item_error=on_item_error,
            max_failed_fraction=max_failed_fraction,
            max_result_bytes=max_result_bytes,
            output_schema=output_schema,
            params=params,
        )

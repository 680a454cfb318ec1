"""OVHCloudAIEndpointsHook: an Airflow connection turned into a configured openai client, with
chat completions, embeddings and model listing that return plain dicts and fail with errors a user
can act on (see `calls/errors.py`). The methods that run many requests as one job (embeddings and
chat at volume) are mixed in from `hooks/jobs.py`.

`openai` is imported only when a call is made, never at module import: DAG files import this
module (through the operators) in every parse, and the scheduler should not pay for the SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ovh_ai_dagfactory.calls.errors import OVHCloudAIEndpointsError, api_key_not_found
from ovh_ai_dagfactory.calls.parameters import (
    chat_parameters,
    check_parameters,
    embedding_parameters,
)
from ovh_ai_dagfactory.calls.redaction import redact
from ovh_ai_dagfactory.calls.responses import wire_json
from ovh_ai_dagfactory.calls.sdk_errors import CallContext, from_openai_error
from ovh_ai_dagfactory.compat import AirflowNotFoundException, BaseHook, mask_secret
from ovh_ai_dagfactory.hooks.connection import EndpointSettings, settings_from_connection
from ovh_ai_dagfactory.hooks.jobs import JobMethods
from ovh_ai_dagfactory.jobs.batches import DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES  # noqa: F401 - re-exported
from ovh_ai_dagfactory.jobs.runner import DEFAULT_MAX_CONCURRENCY, Endpoint  # noqa: F401 - the default, re-exported
from ovh_ai_dagfactory.provider_info import (
    CONN_TYPE,
    DEFAULT_BASE_URL,
    DEFAULT_CONN_ID,
    DEFAULT_REQUESTS_PER_MINUTE,  # noqa: F401 - the jobs' pacing (OVH's limit per model with a token); re-exported
    HOOK_NAME,
    UI_FIELD_BEHAVIOUR,
)

if TYPE_CHECKING:
    import openai

DEFAULT_TIMEOUT = 300.0  # seconds; a long answer of a 70B model takes minutes, not the SDK's 10
DEFAULT_MAX_RETRIES = 2  # the SDK's own default: 3 tries, backoff 0.5 s x 2^n, honouring Retry-After
_CONNECT_TIMEOUT = 10.0  # an unreachable host should fail fast even when reads may take minutes
_MODEL_LIST_TIMEOUT = 10.0  # the listing behind a 404 hint must not delay the real error much


class OVHCloudAIEndpointsHook(JobMethods, BaseHook):
    """Talk to OVHcloud AI Endpoints, or any OpenAI-compatible endpoint set as connection host.

    :param ovh_conn_id: Airflow connection id (conn type `ovhcloud_ai_endpoints` or `generic`).
    :param timeout: seconds per request; overridden by the connection extra `timeout`.
    :param max_retries: SDK retries of 429, 5xx, timeouts and connection errors within one call;
        overridden by the connection extra `max_retries`.
    """

    conn_name_attr = "ovh_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME
    default_base_url = DEFAULT_BASE_URL

    def __init__(
        self,
        ovh_conn_id: str = default_conn_name,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ovh_conn_id = ovh_conn_id
        self.timeout = timeout
        self.max_retries = max_retries
        self._settings: EndpointSettings | None = None
        self._client: openai.OpenAI | None = None

    # -- connection form (Airflow 2.11; Airflow 3 reads the same dict from provider_info) --------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    # -- client ----------------------------------------------------------------------------------

    @property
    def settings(self) -> EndpointSettings:
        """Base URL, token, timeout and retries read from the connection (once per hook)."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.ovh_conn_id)
            except AirflowNotFoundException:
                raise api_key_not_found(self.ovh_conn_id, conn_exists=False) from None
            settings = settings_from_connection(conn, timeout=self.timeout, max_retries=self.max_retries)
            if settings.api_key:
                mask_secret(settings.api_key)  # before anything could log it
            elif not settings.anonymous:
                raise api_key_not_found(self.ovh_conn_id, conn_exists=True)
            self._settings = settings
        return self._settings

    def get_conn(self) -> openai.OpenAI:
        """A configured openai client, created once per hook."""
        if self._client is None:
            import openai

            self._client = openai.OpenAI(**self._client_options())
        return self._client

    def get_async_conn(self) -> openai.AsyncOpenAI:
        """A new `openai.AsyncOpenAI` configured as `get_conn()`'s client, for triggers; the caller
        closes it. Read the connection first without blocking the event loop (see hooks/batch.py)."""
        import openai

        return openai.AsyncOpenAI(**self._client_options())

    def _client_options(self) -> dict[str, Any]:
        import openai

        settings = self.settings
        # Headers the SDK would fill from OPENAI_ORG_ID / OPENAI_PROJECT_ID: not ours to send.
        headers: dict[str, Any] = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        return {
            # The SDK refuses an empty key; anonymous calls drop the header per request instead.
            "api_key": settings.api_key or "anonymous",
            "base_url": settings.base_url,  # always explicit: never OPENAI_BASE_URL from the env
            "timeout": openai.Timeout(settings.timeout, connect=min(settings.timeout, _CONNECT_TIMEOUT)),
            "max_retries": settings.max_retries,
            "default_headers": headers,
        }

    # -- calls -----------------------------------------------------------------------------------

    def chat_completion(
        self,
        model: str,
        messages: list[dict[str, Any]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """POST /chat/completions; returns the response exactly as the wire JSON.

        `kwargs` are any other parameter of the openai SDK's `chat.completions.create` (`seed`,
        `response_format`, `tools`, ...), including `extra_body`, `extra_headers`, `extra_query`
        and `timeout`. A parameter left at None is not sent.
        """
        params = chat_parameters(temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, **kwargs)
        return self._chat_sender(self.get_conn(), model, params)(messages)

    def paced_chat_completion(
        self, requests_per_minute: float, model: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        """`chat_completion`, started at the pace every process of this host shares for this
        endpoint and model (`jobs/host_pacing.py`), at most `requests_per_minute`. A 429 holds all of
        them for its Retry-After; 5xx and timeouts are retried (`max_retries`) by the same loop,
        not by the SDK (`jobs/retries.py` says why)."""
        from ovh_ai_dagfactory.jobs.host_pacing import host_pacer
        from ovh_ai_dagfactory.jobs.retries import RetryPolicy, send_paced

        # Everything but the request itself before the first turn: a turn is not spent on setup.
        send = self._chat_sender(self.get_conn().with_options(max_retries=0), model, chat_parameters(**kwargs))
        return send_paced(
            lambda: send(messages),
            host_pacer(self.settings.base_url, model, requests_per_minute),
            RetryPolicy(max_retries=self.settings.max_retries),
            what=f"chat completion of {model}",
            slower="lower requests_per_minute, or max_parallel of the step",
        )

    def create_embedding(self, model: str, input: str | list[str], **kwargs: Any) -> dict[str, Any]:  # noqa: A002
        """POST /embeddings; `input` is one text or a batch. Returns the wire JSON as a dict.

        `kwargs` are any other parameter of the openai SDK's `embeddings.create` (`dimensions`,
        `user`, ...), including `extra_body`, `extra_headers`, `extra_query` and `timeout`.
        One request, whatever the size of `input`: `embed_texts` splits a large input.
        """
        params = embedding_parameters(kwargs)
        client = self.get_conn()
        check_parameters(client.embeddings.with_raw_response.create, "embedding", "embeddings.create", params)
        return self._embedding_request(client, model, input, params)

    def embedding_sender(self, model: str, params: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]:
        """One embedding request per call, without the SDK's retries: for a batch runner that
        retries, paces and pauses on 429 itself (`jobs/runner.py` says why). `params` as
        `create_embedding`'s keyword arguments; checked against the SDK once, here."""
        client = self.get_conn().with_options(max_retries=0)
        check_parameters(client.embeddings.with_raw_response.create, "embedding", "embeddings.create", params)
        return lambda texts: self._embedding_request(client, model, texts, params)

    def _job_endpoint(self, sender: Callable[[], Callable[[Any], dict[str, Any]]]) -> Endpoint:
        """This connection as a job of `jobs/` sees it (read once its requests start)."""
        return Endpoint(
            sender=sender,
            max_retries=lambda: self.settings.max_retries,
            log=self.log,
        )

    def list_models(self) -> list[str]:
        """Ids of the models the endpoint lists (GET /models), in the endpoint's order."""
        with self._translated_errors("list models", None):
            return self._model_ids(self.get_conn())

    def test_connection(self) -> tuple[bool, str]:
        """A real `GET /models` with the connection's token, as the UI's Test button expects."""
        try:
            models = self.list_models()
        except OVHCloudAIEndpointsError as error:
            return False, str(error)
        except Exception as error:  # the UI shows the message; a traceback would show nothing useful
            return False, self._redact(f"{type(error).__name__}: {error}")
        shown = ", ".join(models[:5]) + (", …" if len(models) > 5 else "")
        return True, f"Connection successful: {self.settings.base_url} lists {len(models)} models ({shown})."

    # -- helpers ---------------------------------------------------------------------------------

    def _chat_sender(
        self, client: openai.OpenAI, model: str, params: dict[str, Any]
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Sends a chat request of `messages` at each call; its parameters checked against the SDK now."""
        create = client.chat.completions.with_raw_response.create
        check_parameters(create, "chat completion", "chat.completions.create", params)

        def send(messages: list[dict[str, Any]]) -> dict[str, Any]:
            with self._translated_errors("chat completion", model):
                raw = create(model=model, messages=messages, **self._with_auth(params))  # type: ignore[arg-type]
            return self._parsed(raw, "chat completion", model)

        return send

    def _embedding_request(
        self,
        client: openai.OpenAI,
        model: str,
        input: str | list[str],  # noqa: A002
        params: dict[str, Any],
    ) -> dict[str, Any]:
        with self._translated_errors("embedding", model):
            raw = client.embeddings.with_raw_response.create(model=model, input=input, **self._with_auth(params))
        return self._parsed(raw, "embedding", model)

    def _parsed(self, raw: Any, operation: str, model: str | None) -> dict[str, Any]:
        """The wire JSON of a 2xx, shape-checked and with the token redacted (see `calls/responses.py`).

        Read from the raw body rather than `raw.parse().to_dict()`: the SDK hands back a `str` for a
        non-JSON body and accepts any JSON object, which would surface as an AttributeError or a
        "None" much later.
        """
        # OVH answers deprecated models with an `x-warning` header (and a delay) before removing them.
        warning = raw.headers.get("x-warning")
        if warning:
            self.log.warning("AI Endpoints warns about model '%s': %s", model, self._redact(warning))
        return wire_json(raw, operation, [self.settings.api_key or ""])

    @contextmanager
    def _translated_errors(self, operation: str, model: str | None) -> Iterator[None]:
        import openai

        settings = self.settings
        try:
            yield
        except openai.OpenAIError as exc:
            context = CallContext(
                conn_id=self.ovh_conn_id,
                base_url=settings.base_url,
                operation=operation,
                model=model,
                max_retries=settings.max_retries,
                timeout=settings.timeout,
                secrets=[settings.api_key or ""],
                list_models=self._model_ids_quickly,
            )
            error = from_openai_error(exc, context)
            if error is None:
                raise
            # `from None`: the SDK's message repeats the raw body; ours already carries what matters.
            raise error from None

    def _redact(self, text: str) -> str:
        return redact(text, [self._settings.api_key or ""] if self._settings else [])

    def _model_ids_quickly(self) -> list[str]:
        return self._model_ids(
            self.get_conn().with_options(max_retries=0, timeout=min(self.settings.timeout, _MODEL_LIST_TIMEOUT))
        )

    def _model_ids(self, client: openai.OpenAI) -> list[str]:
        raw = client.models.with_raw_response.list(**self._with_auth({}))
        return [model["id"] for model in self._parsed(raw, "list models", None)["data"]]

    def _with_auth(self, params: dict[str, Any]) -> dict[str, Any]:
        """Anonymous calls must omit Authorization on each request: the SDK checks the request's
        own headers, not the client's defaults."""
        if not self.settings.anonymous:
            return params
        import openai

        headers = {**(params.get("extra_headers") or {}), "Authorization": openai.Omit()}
        return {**params, "extra_headers": headers}

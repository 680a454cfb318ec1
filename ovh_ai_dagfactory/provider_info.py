"""What Airflow's ProvidersManager learns about us through the `apache_airflow_provider` entry point.

Airflow calls `get_provider_info()` at start-up in every process (scheduler, workers, CLI, UI), so
this module imports nothing: neither Airflow, nor openai, nor the rest of the package.

The connection form is described here declaratively: Airflow 3.2+ reads `ui-field-behaviour` and
`conn-fields` from this dict without importing the hook (and warns if it has to call the hook's
methods instead). Airflow 2.11 ignores those keys and calls the hook's `get_ui_field_behaviour()`,
which is built from the same `UI_FIELD_BEHAVIOUR` constant, so both lines show the same form.
"""

from __future__ import annotations

from typing import Any

CONN_TYPE = "ovhcloud_ai_endpoints"
HOOK_NAME = "OVHcloud AI Endpoints"
HOOK_CLASS = "ovh_ai_dagfactory.hooks.ai_endpoints.OVHCloudAIEndpointsHook"
DEFAULT_BASE_URL = "https://oai.endpoints.kepler.ai.cloud.ovh.net/v1"
#: The connection id the hook and operators use when none is given (the seed's).
DEFAULT_CONN_ID = "ovh_ai_endpoints_default"
#: How the embedding operator runs a large input when not told otherwise: texts per request,
#: requests in flight, and the pace (OVH's rate limit per model with a token, requests per minute).
#: Here, importing nothing, so the pipeline reference can state them without importing Airflow.
DEFAULT_EMBEDDING_BATCH_SIZE = 64
DEFAULT_EMBEDDING_CONCURRENCY = 4
DEFAULT_REQUESTS_PER_MINUTE = 400
#: How the chat job operator (chat at volume: one request per item) runs when not told otherwise:
#: items per output part (100,000 items make 100 parts, not 100,000 files), requests in flight,
#: what a refused item does ("record": its row holds the error and the job goes on; "fail": the
#: first one fails the task), and the share of failed items above which a recording job fails
#: anyway, judged once that many items are done (or at the end of a smaller job): a prompt or a
#: schema that most items fail is a broken job, not a few bad items.
DEFAULT_CHAT_JOB_PART_SIZE = 1000
DEFAULT_CHAT_JOB_CONCURRENCY = 4
DEFAULT_CHAT_JOB_ON_ITEM_ERROR = "record"
CHAT_JOB_ON_ITEM_ERROR_MODES = ("record", "fail")
DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION = 0.05
CHAT_JOB_FAILED_FRACTION_MIN_ITEMS = 20

# Kebab-case, as Airflow 3's provider schema spells it; the hook converts it for Airflow 2.11.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "Base URL (optional)", "password": "API token"},
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "password": "your OVHcloud AI Endpoints API token",
        "extra": '{"timeout": 300, "max_retries": 2}',
    },
}

# Optional extras shown as their own inputs on Airflow 3 (stored as plain keys of `extra`).
CONN_FIELDS: dict[str, Any] = {
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Per-request timeout; overrides the hook's `timeout` argument.",
        "schema": {"type": ["number", "null"]},
    },
    "max_retries": {
        "label": "SDK retries",
        "description": "Retries of 429, 5xx, timeouts and connection errors inside one task try.",
        "schema": {"type": ["integer", "null"]},
    },
    "anonymous": {
        "label": "Anonymous access",
        "description": "Call without a token (OVH rate-limits anonymous calls much lower than calls with a token).",
        "schema": {"type": ["boolean", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    from ovh_ai_dagfactory import __version__

    return {
        "package-name": "ovh-ai-dagfactory",
        "name": "OVHcloud AI Endpoints",
        "description": (
            "OVHcloud AI Endpoints (OpenAI-compatible LLM API): chat completions and embeddings "
            "operators, a hook, and a YAML DAG factory."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": HOOK_NAME,
                "external-doc-url": "https://endpoints.ai.cloud.ovh.net/",
                "tags": ["ai", "llm"],
            }
        ],
        "hooks": [{"integration-name": HOOK_NAME, "python-modules": ["ovh_ai_dagfactory.hooks.ai_endpoints"]}],
        "operators": [
            {
                "integration-name": HOOK_NAME,
                "python-modules": [
                    "ovh_ai_dagfactory.operators.ai_endpoints",
                    "ovh_ai_dagfactory.operators.batch",
                    "ovh_ai_dagfactory.operators.chat_job",
                ],
            }
        ],
        "triggers": [{"integration-name": HOOK_NAME, "python-modules": ["ovh_ai_dagfactory.triggers.batch"]}],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS,
                "hook-name": HOOK_NAME,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }

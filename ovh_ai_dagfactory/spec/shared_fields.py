"""Field declarations shared by several spec objects: each lives once here, and once in the
schema's `$defs`. The objects that use them, and every other declaration, are in `model`."""

from __future__ import annotations

from ovh_ai_dagfactory.spec.declare import (
    AFTER_DEFAULTS,
    MAPPING,
    NON_EMPTY_STRING,
    REQUEST,
    STRING,
    STRING_LIST,
    Declared,
    enum,
    integer,
)
from ovh_ai_dagfactory.spec.shapes import CONNECTION_ID, DURATION, FOR_EACH

MODEL = Declared(
    NON_EMPTY_STRING,
    "Model name as listed in the OVHcloud AI Endpoints catalog; may be a Jinja template such as "
    "{{ var.value.llm_model }}.",
    ("Meta-Llama-3_3-70B-Instruct", "BGE-M3", "{{ var.value.llm_model }}"),
    templated=True,
    required=AFTER_DEFAULTS,
)
RETRIES = Declared(integer(0), "How many times Airflow retries the task after a failure (rate limits, timeouts).", (3,))
RETRY_DELAY = Declared(DURATION, "Wait between retries.", ("30s", 60))
EXECUTION_TIMEOUT = Declared(
    DURATION, "Maximum run time of one task try; Airflow fails the try when it is exceeded.", ("10m", 600)
)
STEP_DESCRIPTION = Declared(
    STRING,
    "Free text shown as the task's documentation in the Airflow UI.",
    ("Summarise yesterday's report",),
    argument="doc_md",
    in_defaults=False,
)
DEPENDS_ON = Declared(
    STRING_LIST,
    "Ids of steps that must finish before this one. Steps referenced in templates as "
    "steps.<id>.<output> are added automatically.",
    (["summarize"],),
    argument=None,  # edges, not an operator argument
    in_defaults=False,
)
EXTRA_BODY = Declared(
    MAPPING,
    "Unvalidated: extra keys merged into the request body as they are (the openai SDK's extra_body), "
    "for endpoint parameters this format does not model. Nothing here is checked before the call.",
    ({"repetition_penalty": 1.1},),
    argument=REQUEST,
)

FOR_EACH_ITEMS = Declared(
    FOR_EACH,
    "Fan-out: run the step once per item, as an Airflow mapped task (one task instance per item, each "
    "retried on its own). A list, or one template giving a list ({{ steps.<id>.json.topics }}, "
    "{{ params.documents }}). The step's templates read the item as {{ item }} and its position (from 0) as "
    "{{ item_index }}; later steps read its outputs as lists in item order: steps.<id>.contents, .jsons, "
    ".responses, and .embeddings (the vectors of all items). An empty list runs no item; later steps then "
    "see [].",
    (["Airflow", "Embeddings"], "{{ steps.extract.json.topics }}"),
    templated=True,
    native=True,
    argument=None,  # the builder expands the task over it (factory/builder.py)
    in_defaults=False,
)
MAX_PARALLEL = Declared(
    integer(1),
    "With for_each: at most this many items run at the same time (Airflow's max_active_tis_per_dagrun), "
    "e.g. to stay under the endpoint's rate limit.",
    (8,),
    argument="max_active_tis_per_dagrun",
    in_defaults=False,
    default_text="no limit beyond the pool's and Airflow's",
)

MODE = Declared(
    enum("sync", "batch"),
    "sync: one request per item, as it runs. batch: the whole step as one OVH Batch API job (about half the "
    "price, outside the per-minute rate limit, done within completion_window); the task waits in Airflow's "
    "triggerer, not in a worker slot. For a for_each chat step or an embedding step with a list input; later "
    "steps read it exactly as in sync mode. Needs a connection with a token.",
    ("batch",),
    argument=None,  # chooses the operator: factory/builder.py
    default_text="sync",
)
COMPLETION_WINDOW = Declared(
    enum("24h", "48h", "72h"),
    "With mode: batch, how long the platform may take; a batch not done by then ends as expired.",
    ("24h",),
    default_text="24h",
)

# -- steps over many items in one task: an embedding step's texts, a chat step's items (chat at volume)
INPUT_FILE = Declared(
    NON_EMPTY_STRING,
    "Read the step's items from a file, as a stream: JSON Lines (one object per line) or .txt (one item per "
    "line); file://, s3://, gs://... (Airflow's ObjectStoragePath); a plain path is a local file relative to "
    "the pipeline file. An embedding step embeds each line's text_field; a chat step sends one request per "
    "line, all in one task, its messages reading the line as {{ item }} ({{ item.text }}, {{ item.id }}) and "
    "{{ item_index }}.",
    ("file:///data/corpus/{{ ds }}.jsonl", "tickets.jsonl"),
    templated=True,
    in_defaults=False,
)
ID_FIELD = Declared(
    NON_EMPTY_STRING,
    "With input_file (JSON Lines): the field carried to the output as each result's id.",
    ("id",),
)
OUTPUT = Declared(
    NON_EMPTY_STRING,
    "A directory URI where the results are written as parts (JSON Lines) committed one by one, so a retry "
    "sends again only what no committed part holds; XCom then holds a manifest, and later steps read the URI "
    "as steps.<id>.output.",
    ("file:///data/results/{{ ds }}/",),
    templated=True,
    argument="output_uri",
    in_defaults=False,
)
INPUT_CONN_ID = Declared(
    CONNECTION_ID, "Airflow connection for input_file (e.g. an aws connection for s3://).", ("aws_default",)
)
OUTPUT_CONN_ID = Declared(
    CONNECTION_ID, "Airflow connection for output (e.g. an aws connection for s3://).", ("aws_default",)
)

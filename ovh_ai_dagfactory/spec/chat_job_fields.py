"""The declarations of a chat step that runs over many items in ONE task (chat at volume): its items
from `input_file` or, with `for_each_mode: in_task`, from `for_each`; how they are run (requests in
flight, what a refused item does) and where the results go. The chat step (`model.ChatStep`) uses
them; the file and output fields it shares with the embedding step are in `shared_fields`."""

from __future__ import annotations

from ovh_ai_dagfactory.provider_info import (
    CHAT_JOB_FAILED_FRACTION_MIN_ITEMS,
    CHAT_JOB_ON_ITEM_ERROR_MODES,
    DEFAULT_CHAT_JOB_CONCURRENCY,
    DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION,
    DEFAULT_CHAT_JOB_ON_ITEM_ERROR,
    DEFAULT_CHAT_JOB_PART_SIZE,
)
from ovh_ai_dagfactory.spec.declare import NON_EMPTY_STRING, Declared, enum, integer, number

#: The `for_each_mode` that runs the items in one task.
IN_TASK = "in_task"

FOR_EACH_MODE = Declared(
    enum("mapped", IN_TASK),
    "With for_each: mapped runs each item as its own Airflow task instance (each visible and retried on "
    "its own; Airflow allows up to max_map_length items, 1,024 by default); in_task sends every item's request "
    "from one task, as input_file does: many in flight, paced, resumable with output. For lists of up to a "
    "few thousand items; a larger set belongs in a file (input_file).",
    (IN_TASK,),
    argument=None,  # chooses the operator: factory/builder.py
    in_defaults=False,
    default_text="mapped",
)
CHAT_ID_FIELD = Declared(
    NON_EMPTY_STRING,
    "With input_file (JSON Lines): the field carried to each result row as its id (a line without it gets "
    "its line number).",
    ("ticket_id",),
    default_text="id",
)
PART_SIZE = Declared(
    integer(1, 1_000_000),
    "With output: items per committed part; a retry sends again only the items of parts not committed.",
    (1000,),
    default_text=str(DEFAULT_CHAT_JOB_PART_SIZE),
)
CHAT_MAX_CONCURRENCY = Declared(
    integer(1, 64),
    "With input_file or for_each_mode: in_task: requests in flight at once.",
    (8,),
    default_text=str(DEFAULT_CHAT_JOB_CONCURRENCY),
)
ON_ITEM_ERROR = Declared(
    enum(*CHAT_JOB_ON_ITEM_ERROR_MODES),
    "With input_file or for_each_mode: in_task, what an item the endpoint refuses (a 4xx, an empty answer, an "
    "answer that does not match output_schema) does. record: its row holds the error and the job goes on, "
    "failing only when more than max_failed_fraction of the items fail; fail: the first one fails the task. "
    "Rate limits, 5xx and timeouts are retried either way.",
    ("fail",),
    default_text=DEFAULT_CHAT_JOB_ON_ITEM_ERROR,
)
MAX_FAILED_FRACTION = Declared(
    number(0, 1),
    "With on_item_error: record, the share of failed items above which the task fails anyway (judged once "
    f"{CHAT_JOB_FAILED_FRACTION_MIN_ITEMS} items are done, or at the end): a prompt that most items fail is a "
    "broken job, not a few bad items.",
    (0.01,),
    default_text=str(DEFAULT_CHAT_JOB_MAX_FAILED_FRACTION),
)
#: The keys that only mean something when a chat step runs its items in one task.
IN_TASK_ONLY = (
    "id_field",
    "output",
    "output_conn_id",
    "part_size",
    "max_concurrency",
    "on_item_error",
    "max_failed_fraction",
)

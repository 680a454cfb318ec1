"""The units of work of a job (`Batch`: the items sent in one request), and the split of an
embedding input into them: texts in batches of at most `batch_size` texts whose request body stays
under the endpoint's limit (OVH refuses bodies over 2 MB).

A batch's size in the body is estimated from each text's JSON form with ASCII escapes, which is
never smaller than what the openai SDK sends (UTF-8 or escapes), so a batch under the limit here is
under it on the wire. The split depends only on the texts and the settings, so a retried task
splits its input the same way and finds the parts an earlier try wrote (`storage.py`).

A request kind that sends one item per request (chat at volume) makes units of one item,
`Batch(index, index, [item], [item_id] or None)`: the runner, the storage and the progress read a
unit the same way whatever its size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ovh_ai_dagfactory.calls.errors import InvalidRequestError
from ovh_ai_dagfactory.provider_info import DEFAULT_EMBEDDING_BATCH_SIZE

# Texts per request; declared once, in provider_info (the pipeline reference shows it without Airflow).
DEFAULT_BATCH_SIZE = DEFAULT_EMBEDDING_BATCH_SIZE
DEFAULT_MAX_REQUEST_BYTES = 2_000_000  # OVH AI Endpoints' request body limit ("2 MB")
_ENVELOPE_SLACK = 256  # bytes of JSON punctuation and headers-free framing around `input`


@dataclass
class Batch:
    """The items of a job sent in one request: a unit of work of the runner (`runner.py`).
    `number` names the output part; `start` is the global index of the first item, so item `i` of
    the answer (`data[i].index` of an embedding answer) is item `start + i` of the input."""

    number: int
    start: int
    items: list[Any] = field(default_factory=list)
    ids: list[Any] | None = None  # one per item when the input has ids

    @property
    def texts(self) -> list[Any]:
        """The items of an embedding batch: its texts."""
        return self.items

    @property
    def end(self) -> int:
        return self.start + len(self.items)

    def describe(self, noun: str = "items") -> str:
        """'batch 3 (texts 192-255)' with `noun` "texts": how messages name the unit."""
        return f"batch {self.number} ({noun} {self.start}-{self.end - 1})"

    def label(self, offset: int, noun: str = "item") -> str:
        """'text 770' or "text 770 (id 'doc-9')" with `noun` "text": how messages name one item."""
        label = f"{noun} {self.start + offset}"
        if self.ids is not None and self.ids[offset] is not None:
            label += f" (id {self.ids[offset]!r})"
        return label

    def part(self, first: int, stop: int) -> Batch:
        """Items `first` to `stop` (offsets in this batch), as a batch of their own (same number)."""
        ids = self.ids[first:stop] if self.ids is not None else None
        return Batch(self.number, self.start + first, self.items[first:stop], ids)


def envelope_bytes(model: str, params: dict[str, Any]) -> int:
    """Bytes of a request body without its texts: the model and the other parameters."""
    try:
        return len(json.dumps({"model": model, "input": [], **params}, default=str)) + _ENVELOPE_SLACK
    except (TypeError, ValueError):  # a parameter json cannot encode: the SDK will say so
        return 4096


def text_bytes(text: str) -> int:
    """An upper bound of what `text` adds to a request body: its escaped JSON form and a comma."""
    return len(json.dumps(text)) + 1


def split_batches(
    items: Iterable[tuple[Any, str]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    envelope: int = _ENVELOPE_SLACK,
) -> Iterator[Batch]:
    """`(id, text)` pairs (id None when the input has none) as batches, lazily: the input is read
    as the batches are consumed, so a large file never sits in memory.

    Raises `InvalidRequestError` for a text that is not a string, or whose request alone would be
    over `max_request_bytes`, naming its index (and id).
    """
    check_batch_settings(batch_size, max_request_bytes)
    budget = max_request_bytes - envelope
    batch = Batch(0, 0, [], [])
    size = 0
    has_ids = False
    for index, (text_id, text) in enumerate(items):
        label = f"text {index}" + (f" (id {text_id!r})" if text_id is not None else "")
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"Invalid request: {label} of the embedding input is {type(text).__name__} "
                f"{str(text)[:80]!r}, not a string. Every input must be a text."
            )
        cost = text_bytes(text)
        if cost > budget:
            raise InvalidRequestError(
                f"Invalid request: {label} is {cost:,} bytes in a request body, over the endpoint's limit of "
                f"{max_request_bytes:,} bytes (max_request_bytes) on its own. Split it into smaller texts "
                "before embedding: it is also far longer than any embedding model's context."
            )
        if batch.items and (len(batch.items) >= batch_size or size + cost > budget):
            yield _finished(batch, has_ids)
            batch, size, has_ids = Batch(batch.number + 1, index, [], []), 0, False
        batch.items.append(text)
        assert batch.ids is not None  # set to None only once the batch is finished
        batch.ids.append(text_id)
        has_ids = has_ids or text_id is not None
        size += cost
    if batch.items:
        yield _finished(batch, has_ids)


def check_batch_settings(batch_size: int, max_request_bytes: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidRequestError(f"Invalid request: batch_size must be a whole number ≥ 1, not {batch_size!r}.")
    if not isinstance(max_request_bytes, int) or max_request_bytes <= _ENVELOPE_SLACK:
        raise InvalidRequestError(
            f"Invalid request: max_request_bytes must be a whole number of bytes above {_ENVELOPE_SLACK}, "
            f"not {max_request_bytes!r}."
        )


def _finished(batch: Batch, has_ids: bool) -> Batch:
    if not has_ids:
        batch.ids = None  # no ids to carry: messages name texts by index only
    return batch


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_REQUEST_BYTES",
    "Batch",
    "check_batch_settings",
    "envelope_bytes",
    "split_batches",
    "text_bytes",
]

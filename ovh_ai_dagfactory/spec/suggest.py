"""'Did you mean …?' for names users mistype: keys, step ids, enum values, outputs."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word`, or None when nothing is close enough to help."""
    options = [candidate for candidate in candidates if isinstance(candidate, str)]
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    lowered = {option.lower(): option for option in options}  # `Chat` → `chat`
    return lowered.get(word.lower())


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint line such as "did you mean 'temperature'?", or None."""
    match = closest(word, candidates)
    return f"did you mean '{match}'?" if match else None

"""The results of an answer (`chat_content`, `chat_json`, `check_output_schema`,
`embedding_vectors`, `item_error_message`), at the path docs/provider.md first gave users.

The code lives in `ovh_ai_dagfactory.calls.results`; this path is kept so that
`from ovh_ai_dagfactory.hooks.results import chat_json` keeps working. Nothing in the package
imports this module (tests/test_layers.py checks).
"""

from __future__ import annotations

from ovh_ai_dagfactory.calls.results import (
    chat_content,
    chat_json,
    check_output_schema,
    embedding_vectors,
    item_error_message,
)

__all__ = ["chat_content", "chat_json", "check_output_schema", "embedding_vectors", "item_error_message"]

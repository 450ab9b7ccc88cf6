"""One rule for JSON objects everywhere the node reads JSON: no key twice.

RFC 8259 leaves a repeated key to the implementation, and Python's parser
keeps the last value; a proxy, an auditor or an editor that keeps the first
would then see another document than the node acts on.  Every JSON reader
of the node (client request bodies, configuration and genesis files)
passes :func:`unique_keys` as the parser's ``object_pairs_hook`` and turns
:class:`RepeatedKey` into its own error.
"""

from __future__ import annotations

from typing import Any

from node.sdk.errors import ProvenetError


class RepeatedKey(ProvenetError, ValueError):
    """A JSON object names ``key`` more than once."""

    def __init__(self, key: str) -> None:
        message = f"the key {key!r} appears twice in one object"
        super().__init__("duplicate_key", message, text=message)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(key)
            seen.add(key)
    return document

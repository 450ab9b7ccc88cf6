"""``GET /v1/state/{key}``: one state key's value, with its proof on request.

Theory of operation
-------------------
The key travels as hex in the path (state keys are bytes and hold ``/``,
so text would not fit a path segment; the CLI and the SDK do the hex).  It
is refused with ``bad_request`` if it is not an even number of hex digits
and with ``limit_exceeded`` beyond ``NodeLimits.max_state_key_bytes``,
before the hex is decoded.

The answer is ``{"key", "value", "height"}`` (``value`` null when the key
is absent).  With ``prove=1`` it also carries ``proof``, the key's
:class:`~contracts.stateroot.StateProof` (of its value, or of its absence),
and ``anchor``, the :class:`~node.sdk.results_proof.ResultsAnchor` that
certifies the state root of ``height``.  A node can prove things about its
current state only (one in-memory trie), so :func:`read_state` takes the
value, the height and the proof in one synchronous step, and only then does
the handler wait (up to the request's ``timeout_ms``, capped by
``max_wait_ms``) for the block that certifies that height.  If it does not
come in time ``anchor`` is null: the client cannot check the answer, and
asks again.
"""

from __future__ import annotations

import re

from contracts.state import MemoryState
from node.api.errors import ApiError

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def parse_key(raw: str, max_key_bytes: int) -> bytes:
    """The state key named by a path segment of hex digits."""
    if len(raw) > 2 * max_key_bytes:
        raise ApiError(
            "limit_exceeded",
            f"a key of {len(raw) // 2} bytes exceeds this node's max_state_key_bytes "
            f"({max_key_bytes})",
        )
    if not _HEX.fullmatch(raw):
        raise ApiError("bad_request", "key must be the state key's bytes as hex")
    return bytes.fromhex(raw)


def read_state(state: MemoryState, height: int, key: bytes, prove: bool) -> dict[str, object]:
    """The answer for ``key`` in ``state`` as of ``height`` (msgpack form, bytes as bytes).

    ``height`` must be the height ``state`` was executed to, read with no
    await between it and this call.
    """
    answer: dict[str, object] = {"key": key, "value": state.get(key), "height": height}
    if prove:
        answer["proof"] = state.prove(key).to_dict()
    return answer

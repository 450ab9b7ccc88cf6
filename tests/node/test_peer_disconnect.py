"""A peer link that ends because the peer went away is logged as one line.

After a SIGSTOP/SIGCONT or a kill -9 of a validator, aiohttp's automatic
pong to that peer's last ping is written to a closing transport and raises
``ClientConnectionResetError`` from inside ``receive``.  That is a routine
disconnect: the node must say so in one line and carry on, not log an
ERROR with a traceback from the request handler.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from consensus.codec import Ed25519Signer, ed25519_verify
from consensus.config import ReplicaConfig
from consensus.quorum import ValidatorSet
from node.runtime.config import NodeLimits
from node.runtime.metrics import NodeMetrics
from node.runtime.peers import PeerIdentity, PeerLinks, _drain

pytestmark = pytest.mark.asyncio

CHAIN = "provenet-test"


def _links() -> PeerLinks:
    signers = [Ed25519Signer.generate() for _ in range(4)]
    validators = ValidatorSet(tuple(signer.public_key for signer in signers))
    identity = PeerIdentity(CHAIN, 0, signers[0], validators, {i: f"v{i}" for i in range(4)})
    return PeerLinks(
        identity,
        (),
        NodeLimits(),
        ed25519_verify,
        lambda _peer, _message: True,
        NodeMetrics(),
        None,
        tls_required=False,
        consensus=ReplicaConfig(chain_id=CHAIN, validators=validators, replica_id=0),
    )


class _ResetWhilePonging:
    """A websocket whose next receive fails as aiohttp's automatic pong does
    when the peer has just gone: ``ClientConnectionResetError``."""

    closed = False

    def __aiter__(self) -> AsyncIterator[object]:
        return self

    async def __anext__(self) -> object:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")


async def test_a_pong_to_a_vanished_peer_is_one_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="provenet")
    links = _links()
    # On the old code the reset escaped to aiohttp's request handler, which
    # logs "Error handling request" at ERROR with the traceback.
    await links._receive_frames(_ResetWhilePonging(), 2)  # type: ignore[arg-type]
    records = [r for r in caplog.records if r.name.startswith("provenet")]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "validator 2" in record.getMessage() and "lost" in record.getMessage()
    assert "Cannot write to closing transport" in record.getMessage()


async def test_the_dialer_side_reader_ends_quietly_on_the_same_reset() -> None:
    # _drain runs as a task that _run_link cancels; an exception left in it
    # would be logged as "Task exception was never retrieved".
    await _drain(_ResetWhilePonging())  # type: ignore[arg-type]

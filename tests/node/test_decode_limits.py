"""Decoding limits of the node's entry points: peer hello, chain pages, batch bodies.

Each entry point decodes input from someone else with limits sized to what
honest input of its kind needs: an honest maximal input decodes, and one
dense in values within the byte limit is refused by its count limit before
msgpack builds anything.
"""

from __future__ import annotations

import pytest

from consensus.blocks import GENESIS_PARENT_HASH, ChainTip
from consensus.codec import DecodeError, Ed25519Signer, decode, digest, ed25519_verify, encode
from consensus.messages import Commit, sign
from consensus.quorum import ValidatorSet
from consensus.wire import message_to_wire
from node.api.routes import batch_limits
from node.runtime.config import NodeLimits
from node.runtime.follower import BlockRejected, check_block, page_limits
from node.runtime.peers import (
    HandshakeError,
    PeerIdentity,
    hello_bytes,
    read_challenge,
    read_hello_reply,
)

CHAIN = "limits-test"
SIGNERS = [Ed25519Signer.from_seed(digest(b"validator %d" % n)) for n in range(4)]
VALIDATORS = ValidatorSet(tuple(signer.public_key for signer in SIGNERS))
CHALLENGE = b"\x07" * 32


def _zeros(lists: int, per_list: int) -> bytes:
    """A canonical list of ``lists`` lists of ``per_list`` zeros."""
    inner = b"\xdc" + per_list.to_bytes(2, "big") + b"\x00" * per_list
    return b"\xdc" + lists.to_bytes(2, "big") + inner * lists


# ------------------------------------------------------------------ peer hello


def test_a_challenge_from_replica_true_is_not_from_replica_1() -> None:
    """True == 1 in Python: a listener claiming to be validator `true` must
    not pass for validator 1."""
    hello = {"chain_id": CHAIN, "replica_id": 1, "challenge": CHALLENGE}
    assert read_challenge(encode(hello), CHAIN, 1) == CHALLENGE
    with pytest.raises(HandshakeError, match="claims to be True"):
        read_challenge(encode({**hello, "replica_id": True}), CHAIN, 1)


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        ({"replica_id": True}, "not_a_validator"),
        ({"replica_id": 0}, "not_a_validator"),  # the listener itself
        ({"replica_id": 9}, "not_a_validator"),
        ({"signature": b"\x00" * 64}, "bad_handshake_signature"),
    ],
)
def test_a_hello_reply_is_refused_with_a_stable_code(hello: dict[str, object], code: str) -> None:
    identity = PeerIdentity(CHAIN, 0, SIGNERS[0], VALIDATORS, {})
    signature = SIGNERS[1].sign(hello_bytes(CHAIN, CHALLENGE, 1, 0))
    honest = {"replica_id": 1, "signature": signature}
    assert read_hello_reply(encode(honest), identity, CHALLENGE, ed25519_verify) == 1
    with pytest.raises(HandshakeError, match=code):
        read_hello_reply(encode({**honest, **hello}), identity, CHALLENGE, ed25519_verify)


def test_a_hello_dense_in_values_is_refused_before_it_is_unpacked(
    unpack_calls: list[int],
) -> None:
    identity = PeerIdentity(CHAIN, 0, SIGNERS[0], VALIDATORS, {})
    with pytest.raises(HandshakeError, match="handshake_malformed"):
        read_hello_reply(b"\x9f" + b"\x80" * 15, identity, CHALLENGE, ed25519_verify)
    with pytest.raises(HandshakeError, match="max_"):
        read_challenge(b"\x9f" + b"\x80" * 15, CHAIN, 1)
    assert unpack_calls == []


# ------------------------------------------------------------------ chain pages


def _page(blocks: int, payloads: int, payload_bytes: int) -> bytes:
    """A page as a validator serves it: each block's header, 4 COMMITs and payloads."""
    commits = [
        message_to_wire(sign(Commit(2**63 - 1, 2**63 - 1, b"\x01" * 32, s), SIGNERS[s], CHAIN))
        for s in range(4)
    ]
    header = {
        "chain_id": CHAIN,
        "height": 2**63 - 1,
        "prev_block_hash": b"\x02" * 32,
        "time_ms": 2**63 - 1,
        "proposer_time_ms": 2**63 - 1,
        "requests_root": b"\x03" * 32,
        "request_count": payloads,
        "executed_height": 2**63 - 1,
        "executed_results_root": b"\x04" * 32,
    }
    block_payloads = [index.to_bytes(4, "big") * (payload_bytes // 4) for index in range(payloads)]
    block = {"header": header, "certificate": commits, "payloads": block_payloads}
    return encode({"height": 2**63 - 1, "blocks": [block] * blocks})


def test_the_largest_honest_chain_page_decodes() -> None:
    """64 blocks of 512 requests, 8 MiB of payloads in all: a full page."""
    limits = NodeLimits()
    page = _page(limits.follow_page_blocks, 512, limits.chain_page_bytes // (64 * 512))
    decoded = decode(page, page_limits(limits, 4, {}))
    assert isinstance(decoded, dict) and len(decoded["blocks"]) == 64


def test_a_page_of_blocks_larger_than_the_observers_own_batch_size_decodes() -> None:
    """Validators may raise max_batch_size; an observer that did not must still
    read their pages (the bound is the wire's, not its own configuration)."""
    limits = NodeLimits()
    page = _page(2, 1_000, 64)
    decoded = decode(page, page_limits(limits, 4, {"max_batch_size": 16}))
    assert isinstance(decoded, dict) and len(decoded["blocks"][0]["payloads"]) == 1_000


def test_a_chain_page_dense_in_values_is_refused_by_count(unpack_calls: list[int]) -> None:
    limits = page_limits(NodeLimits(), 4, {})
    # 380 lists of 2,048 zeros: 778,621 values in 780 KB, far inside the bytes
    # and under the container count.
    page = _zeros(380, 2_048)
    assert len(page) < limits.max_size_bytes // 10
    with pytest.raises(DecodeError, match="max_objects"):
        decode(page, limits)
    assert unpack_calls == []


def test_a_certificate_entry_is_decoded_only_if_it_can_be_a_commit(
    unpack_calls: list[int],
) -> None:
    """A lying validator's page may hold anything where a COMMIT goes: it is
    refused by its size before it is unpacked."""
    served = decode(_page(1, 1, 8))
    assert isinstance(served, dict)
    block = served["blocks"][0]
    block["certificate"] = [_zeros(60, 1_000)]
    unpack_calls.clear()
    tip = ChainTip(0, GENESIS_PARENT_HASH, 0, b"")
    with pytest.raises(BlockRejected, match="exceeds 512"):
        check_block(block, tip, CHAIN, VALIDATORS, {})
    assert unpack_calls == []


# ------------------------------------------------------------------ API batch bodies


def test_a_batch_body_holds_envelopes_and_nothing_else() -> None:
    limits = batch_limits(NodeLimits())
    envelopes = [b"\x01" * 200] * NodeLimits().max_batch_envelopes
    assert decode(encode(envelopes), limits) == envelopes
    with pytest.raises(DecodeError, match="max_collection_len"):
        decode(encode([*envelopes, b"\x01"]), limits)
    with pytest.raises(DecodeError, match="max_depth"):
        decode(_zeros(100, 1_000), limits)

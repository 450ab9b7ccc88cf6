"""Fuzz targets: every decoder entry point, fed arbitrary and mutated input.

Each target asserts that only the decoder's documented error leaves it,
whatever the input: arbitrary bytes, canonical values, valid encodings with
bytes flipped, cut or inserted, and valid values with one part replaced
(wrong types, booleans for integers, oversized fields).  The default suite
runs a few dozen inputs per target; ``PROVENET_FUZZ=1 scripts/test -m fuzz
tests/fuzz -s`` runs ``PROVENET_FUZZ_EXAMPLES`` (default 20,000) per target
and prints inputs per second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from fuzzkit import (
    DEFAULT_EXAMPLES,
    FUZZ,
    GENESIS_TIP,
    LONG_EXAMPLES,
    Artefacts,
    codec_inputs,
    fuzz,
    json_values,
    value_mutations,
)
from hypothesis import strategies as st

from consensus.blocks import ChainTip
from consensus.codec import DecodeError, Limits, decode, ed25519_verify, encode
from consensus.wire import frame_limits, message_from_wire, record_from_wire
from contracts.tx import decode_tx
from node.runtime.config import NODE_CONSENSUS_DEFAULTS, NodeLimits
from node.runtime.follower import BlockRejected, check_block, page_limits
from node.runtime.peers import HandshakeError, PeerIdentity, read_challenge, read_hello_reply
from node.sdk.bundle_verify import BUNDLE_LIMITS, BundleError, verify_bundle
from node.sdk.errors import ProofError
from node.sdk.proof import verify_block, verify_tx_proof

SMALL_LIMITS = Limits(
    max_size_bytes=4_096,
    max_depth=4,
    max_collection_len=16,
    max_str_len=64,
    max_bytes_len=64,
    max_objects=64,
    max_containers=16,
)


# ------------------------------------------------------------------ targets


def check_codec(data: bytes) -> None:
    for limits in (SMALL_LIMITS, Limits()):
        try:
            value = decode(data, limits)
        except DecodeError:
            continue
        assert encode(value) == data


def check_wire(artefacts: Artefacts) -> Any:
    from consensus.config import ReplicaConfig

    config = ReplicaConfig(artefacts.chain_id, artefacts.validators, 0, **NODE_CONSENSUS_DEFAULTS)
    limits = frame_limits(config, NodeLimits().max_frame_bytes)

    def check(data: bytes) -> None:
        with contextlib.suppress(DecodeError):
            message_from_wire(data, limits)

    return check


def check_record(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        record_from_wire(data)


def check_tx(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_tx(data)


def check_page(artefacts: Artefacts) -> Any:
    limits = page_limits(NodeLimits(), artefacts.validators.n, {})

    def check(data: bytes) -> None:
        """What an observer does with a page (node/runtime/follower.py _follow_once)."""
        try:
            page = decode(data, limits)
        except DecodeError:
            return
        blocks = page.get("blocks") if isinstance(page, dict) else None
        tip = GENESIS_TIP
        for served in blocks if isinstance(blocks, list) else []:
            try:
                block = check_block(served, tip, artefacts.chain_id, artefacts.validators, {})
            except BlockRejected:
                return
            header = block.header
            tip = ChainTip(header.height, header.hash, header.time_ms, b"")

    return check


def check_bundle(artefacts: Artefacts) -> Any:
    def check(data: bytes) -> None:
        with contextlib.suppress(BundleError):
            verify_bundle(data, artefacts.network)

    return check


def check_hello(artefacts: Artefacts) -> Any:
    identity = PeerIdentity(
        artefacts.chain_id, 0, artefacts.validator_signers[0], artefacts.validators, {}
    )

    def check(data: bytes) -> None:
        for read in (
            lambda: read_challenge(data, artefacts.chain_id, 1),
            lambda: read_hello_reply(data, identity, b"\x07" * 32, ed25519_verify),
        ):
            with contextlib.suppress(HandshakeError):
                read()

    return check


def check_proof(artefacts: Artefacts) -> Any:
    tx_ids = [tx_id for tx_id, _ in artefacts.proofs]

    def check(document: Any) -> None:
        verifiers: tuple[Callable[[], object], ...] = (
            lambda: verify_tx_proof(tx_ids[0], document, artefacts.validators, artefacts.chain_id),
            lambda: verify_block(document, artefacts.validators, artefacts.chain_id),
        )
        for verify in verifiers:
            with contextlib.suppress(ProofError):
                verify()

    return check


def hello_messages(artefacts: Artefacts) -> tuple[bytes, ...]:
    from node.runtime.peers import hello_bytes

    signer = artefacts.validator_signers[1]
    signature = signer.sign(hello_bytes(artefacts.chain_id, b"\x07" * 32, 1, 0))
    return (
        encode({"chain_id": artefacts.chain_id, "replica_id": 1, "challenge": b"\x07" * 32}),
        encode({"replica_id": 1, "signature": signature}),
    )


def targets(artefacts: Artefacts) -> dict[str, tuple[st.SearchStrategy[Any], Any]]:
    """Every decoder entry point: (inputs, check)."""
    frames = artefacts.frames
    proofs = tuple(proof for _, proof in artefacts.proofs) + artefacts.block_answers
    return {
        "codec.decode": (codec_inputs(frames + artefacts.envelopes), check_codec),
        "wire.message_from_wire": (codec_inputs(frames), check_wire(artefacts)),
        "wire.record_from_wire": (codec_inputs(artefacts.records), check_record),
        "contracts.decode_tx": (codec_inputs(artefacts.envelopes), check_tx),
        "peers.hello": (codec_inputs(hello_messages(artefacts)), check_hello(artefacts)),
        "follower.chain_page": (codec_inputs((artefacts.page,)), check_page(artefacts)),
        "bundle_verify.verify_bundle": (
            codec_inputs((artefacts.bundle,)),
            check_bundle(artefacts),
        ),
        "sdk.proof": (
            st.one_of(json_values, value_mutations(proofs, json_values)),
            check_proof(artefacts),
        ),
    }


TARGETS = [
    "codec.decode",
    "wire.message_from_wire",
    "wire.record_from_wire",
    "contracts.decode_tx",
    "peers.hello",
    "follower.chain_page",
    "bundle_verify.verify_bundle",
    "sdk.proof",
]


# ------------------------------------------------------------------ the valid inputs are valid


def test_the_valid_inputs_pass_every_check(artefacts: Artefacts) -> None:
    """The fuzzers mutate inputs that pass: a mutant that is refused was refused
    for its mutation, not because the seed was already wrong."""
    verdict = verify_bundle(artefacts.bundle, artefacts.network)
    assert verdict.asset_id == "S-f1" and len(verdict.steps) == len(artefacts.blocks)
    decode(artefacts.bundle, BUNDLE_LIMITS)
    page = decode(artefacts.page, page_limits(NodeLimits(), artefacts.validators.n, {}))
    tip = GENESIS_TIP
    for served in page["blocks"]:  # type: ignore[index]
        block = check_block(served, tip, artefacts.chain_id, artefacts.validators, {})
        tip = ChainTip(block.header.height, block.header.hash, block.header.time_ms, b"")
    for tx_id, proof in artefacts.proofs:
        verify_tx_proof(tx_id, proof, artefacts.validators, artefacts.chain_id)
    for answer in artefacts.block_answers:
        verify_block(answer, artefacts.validators, artefacts.chain_id)
    for frame in artefacts.frames:
        message_from_wire(frame)
    for record in artefacts.records:
        record_from_wire(record)
    for envelope in artefacts.envelopes:
        decode_tx(envelope)
    challenge, reply = hello_messages(artefacts)
    assert read_challenge(challenge, artefacts.chain_id, 1) == b"\x07" * 32
    identity = PeerIdentity(
        artefacts.chain_id, 0, artefacts.validator_signers[0], artefacts.validators, {}
    )
    assert read_hello_reply(reply, identity, b"\x07" * 32, ed25519_verify) == 1


# ------------------------------------------------------------------ fuzzing


@pytest.mark.parametrize("name", TARGETS)
def test_only_the_documented_error_leaves(artefacts: Artefacts, name: str) -> None:
    strategy, check = targets(artefacts)[name]
    fuzz(name, strategy, check, DEFAULT_EXAMPLES)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ, reason="set PROVENET_FUZZ=1 for the long fuzz run")
@pytest.mark.parametrize("name", TARGETS)
def test_long_fuzz_run(artefacts: Artefacts, name: str) -> None:
    strategy, check = targets(artefacts)[name]
    fuzz(name, strategy, check, LONG_EXAMPLES)

"""The SDK's proof check on a block built and committed by hand (no network).

Four Ed25519 validators commit a batch of real signed transactions; the
proof JSON is written the way the node serves it (see ``proof_json``), and
every way of tampering with it must raise ProofError naming the part.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from consensus.blocks import BlockHeader, derive_header
from consensus.codec import Ed25519Signer, digest
from consensus.merkle import inclusion_proof
from consensus.messages import Batch, Commit, Request, sign
from consensus.quorum import ValidatorSet
from contracts.tx import encode_tx, sign_tx, tx_id
from node.sdk.errors import ProofError
from node.sdk.proof import header_from_json, verify_block, verify_tx_proof

CHAIN = "provenet-test"
VALIDATOR_SIGNERS = [Ed25519Signer.from_seed(digest(b"validator-%d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet(tuple(signer.public_key for signer in VALIDATOR_SIGNERS))
OUTSIDER = Ed25519Signer.from_seed(digest(b"not-a-validator"))
PARTICIPANT = Ed25519Signer.from_seed(digest(b"miner"))
VIEW = 3
HEIGHT = 7


def _txs() -> list[bytes]:
    envelopes = []
    for nonce in range(5):
        tx = sign_tx(
            PARTICIPANT,
            chain_id=CHAIN,
            nonce=nonce,
            contract="food",
            method="harvest",
            args={"lot_id": f"W{nonce}", "product": "wheat", "mass_grams": 1_000 + nonce},
        )
        assert digest(encode_tx(tx)) == tx_id(tx)
        envelopes.append(encode_tx(tx))
    return envelopes


ENVELOPES = _txs()
TX_IDS = [digest(envelope) for envelope in ENVELOPES]
BATCH = Batch(HEIGHT, tuple(Request.of(e) for e in ENVELOPES), 1_700_000_000_000, 6, b"s" * 32)
HEADER = derive_header(CHAIN, BATCH, b"p" * 32, 1_699_999_999_000)


def commit(
    sender: int, signer: Ed25519Signer | None = None, header: BlockHeader = HEADER
) -> Commit:
    vote = Commit(VIEW, header.height, header.batch_digest, sender)
    return sign(vote, signer or VALIDATOR_SIGNERS[sender], CHAIN)


CERTIFICATE = [commit(0), commit(2), commit(3)]


def header_json(header: BlockHeader) -> dict[str, object]:
    """BlockHeader.to_dict() with bytes as lowercase hex, as the node serves it."""
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in header.to_dict().items()}


def commit_json(vote: Commit) -> dict[str, object]:
    return {
        "view": vote.view,
        "height": vote.height,
        "digest": vote.digest.hex(),
        "sender": vote.sender,
        "signature": vote.signature.hex(),
    }


def proof_json(index: int, certificate: list[Commit] = CERTIFICATE) -> dict[str, object]:
    """The Proof object of spec.md for transaction ``index`` of the block."""
    return {
        "block": header_json(HEADER),
        "block_hash": HEADER.hash.hex(),
        "certificate": [commit_json(vote) for vote in certificate],
        "index": index,
        "count": len(TX_IDS),
        "path": [node.hex() for node in inclusion_proof(TX_IDS, index)],
    }


def block_json() -> dict[str, object]:
    """A GET /v1/blocks/{height} answer for the block."""
    return {
        "height": HEADER.height,
        "hash": HEADER.hash.hex(),
        "header": header_json(HEADER),
        "certificate": [commit_json(vote) for vote in CERTIFICATE],
        "txs": [{"tx_id": t.hex(), "status": "ok", "code": None} for t in TX_IDS],
    }


def refused(tx: bytes, proof: object, chain: str = CHAIN) -> ProofError:
    with pytest.raises(ProofError) as caught:
        verify_tx_proof(tx, proof, VALIDATORS, chain)
    return caught.value


@pytest.mark.parametrize("index", range(len(TX_IDS)))
def test_a_good_proof_verifies_for_every_position(index: int) -> None:
    header = verify_tx_proof(TX_IDS[index], proof_json(index), VALIDATORS, CHAIN)
    assert header == HEADER and header.hash == HEADER.hash


def test_header_json_round_trips() -> None:
    assert header_from_json(header_json(HEADER)) == HEADER


def test_a_flipped_signature_byte_is_refused() -> None:
    proof = proof_json(1)
    vote = proof["certificate"][1]  # type: ignore[index]
    signature = bytearray.fromhex(vote["signature"])
    signature[10] ^= 0x01
    vote["signature"] = signature.hex()
    error = refused(TX_IDS[1], proof)
    assert error.part == "certificate" and "bad signature from validator 2" in error.message


def test_too_few_commits_are_refused() -> None:
    error = refused(TX_IDS[0], proof_json(0, CERTIFICATE[:2]))
    assert error.part == "certificate" and "2 commits, quorum is 3" in error.message


def test_a_commit_from_a_non_validator_is_refused() -> None:
    # Signed by an outsider claiming to be validator 1: its key does not match.
    impostor = [*CERTIFICATE[:2], commit(1, OUTSIDER)]
    error = refused(TX_IDS[0], proof_json(0, impostor))
    assert error.part == "certificate" and "bad signature from validator 1" in error.message
    # Signed by an outsider under an id beyond the validator set.
    stranger = [*CERTIFICATE[:2], commit(4, OUTSIDER)]
    error = refused(TX_IDS[0], proof_json(0, stranger))
    assert error.part == "certificate" and "unknown validator 4" in error.message


def test_a_duplicated_signer_is_refused() -> None:
    error = refused(TX_IDS[0], proof_json(0, [commit(0), commit(2), commit(2)]))
    assert error.part == "certificate" and "validator 2 signed twice" in error.message


def test_a_wrong_transaction_id_is_refused() -> None:
    error = refused(digest(b"some other transaction"), proof_json(2))
    assert error.part == "inclusion" and "is not request 2" in error.message


def test_a_wrong_index_or_path_is_refused() -> None:
    error = refused(TX_IDS[2], proof_json(3))
    assert error.part == "inclusion"
    wrong_index = proof_json(2)
    wrong_index["index"] = 3
    assert refused(TX_IDS[2], wrong_index).part == "inclusion"
    out_of_range = proof_json(2)
    out_of_range["index"] = 5
    assert refused(TX_IDS[2], out_of_range).part == "inclusion"
    short_path = proof_json(2)
    short_path["path"] = short_path["path"][:-1]  # type: ignore[index]
    assert refused(TX_IDS[2], short_path).part == "inclusion"
    bad_node = proof_json(2)
    bad_node["path"][0] = digest(b"x").hex()  # type: ignore[index]
    assert refused(TX_IDS[2], bad_node).part == "inclusion"
    wrong_count = proof_json(2)
    wrong_count["count"] = 6
    error = refused(TX_IDS[2], wrong_count)
    assert error.part == "inclusion" and "the block holds 5" in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", HEIGHT + 1),
        ("request_count", 6),
        ("requests_root", digest(b"other root")),
        ("proposer_time_ms", 1_699_999_999_999),
        ("executed_height", 5),
        ("executed_results_root", b"t" * 32),
    ],
)
def test_a_changed_header_field_breaks_the_certificate(field: str, value: object) -> None:
    # The forger also fixes block_hash, so only the certificate can catch it.
    changed: dict[str, Any] = {field: value}
    forged = replace(HEADER, **changed)
    proof = proof_json(0)
    proof["block"] = header_json(forged)
    proof["block_hash"] = forged.hash.hex()
    assert refused(TX_IDS[0], proof).part == "certificate"


def test_a_changed_header_without_its_hash_is_refused() -> None:
    proof = proof_json(0)
    proof["block"]["prev_block_hash"] = (b"q" * 32).hex()  # type: ignore[index]
    error = refused(TX_IDS[0], proof)
    assert error.part == "block_hash"


def test_a_block_time_before_the_proposers_time_is_refused() -> None:
    forged = replace(HEADER, time_ms=HEADER.proposer_time_ms - 1)
    proof = proof_json(0)
    proof["block"] = header_json(forged)
    proof["block_hash"] = forged.hash.hex()
    assert refused(TX_IDS[0], proof).part == "header"


def test_another_chain_is_refused() -> None:
    # Checked against another chain id: the header names this one.
    error = refused(TX_IDS[0], proof_json(0), chain="another-chain")
    assert error.part == "chain_id" and "another-chain" in error.message
    # A header renamed to the other chain: the votes were signed for this one.
    renamed = replace(HEADER, chain_id="another-chain")
    proof = proof_json(0)
    proof["block"] = header_json(renamed)
    proof["block_hash"] = renamed.hash.hex()
    error = refused(TX_IDS[0], proof, chain="another-chain")
    assert error.part == "certificate" and "bad signature" in error.message


def test_another_validator_set_is_refused() -> None:
    others = ValidatorSet(
        tuple(Ed25519Signer.from_seed(bytes([i]) * 32).public_key for i in range(4))
    )
    with pytest.raises(ProofError) as caught:
        verify_tx_proof(TX_IDS[0], proof_json(0), others, CHAIN)
    assert caught.value.part == "certificate"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p.pop("certificate"),
        lambda p: p.update(index="0"),
        lambda p: p.update(index=True),
        lambda p: p.update(path="00"),
        lambda p: p["block"].update(height=-1),
        lambda p: p["block"].update(requests_root="zz"),
        lambda p: p["block"].update(prev_block_hash="00" * 31),
        lambda p: p["certificate"][0].update(signature="00"),
        lambda p: p.update(block=None),
    ],
)
def test_malformed_proofs_are_refused_not_crashed(mangle: Callable[[Any], object]) -> None:
    proof = copy.deepcopy(proof_json(0))
    mangle(proof)
    assert refused(TX_IDS[0], proof).part == "malformed"


def test_a_missing_proof_is_malformed() -> None:
    assert refused(TX_IDS[0], None).part == "malformed"


def test_a_block_answer_verifies_and_its_transaction_list_is_bound() -> None:
    assert verify_block(block_json(), VALIDATORS, CHAIN) == HEADER
    hidden = block_json()
    hidden["txs"] = hidden["txs"][:-1]  # type: ignore[index]
    with pytest.raises(ProofError) as caught:
        verify_block(hidden, VALIDATORS, CHAIN)
    assert caught.value.part == "transactions"
    swapped = block_json()
    swapped["txs"][0]["tx_id"] = digest(b"invented").hex()  # type: ignore[index]
    with pytest.raises(ProofError) as caught:
        verify_block(swapped, VALIDATORS, CHAIN)
    assert caught.value.part == "transactions"


@pytest.mark.parametrize(("height", "index"), [(HEIGHT, True), (float(HEIGHT), 1), (HEIGHT, 1.0)])
def test_a_status_naming_its_place_with_other_types_is_refused(
    height: object, index: object
) -> None:
    """A JSON true or 7.0 equals 1 or 7 in Python; the place a status names
    must be the proof's, type and all."""
    from node.sdk.client import ProvenetClient

    client = ProvenetClient(["http://127.0.0.1:1"], None, CHAIN, VALIDATORS)
    status = {
        "tx_id": TX_IDS[1].hex(),
        "status": "committed",
        "proof": proof_json(1),
        "height": height,
        "index": index,
        "receipt": {"tx_id": TX_IDS[1].hex(), "status": "ok"},
    }
    # The right place passes this check and goes on to the receipt's proof,
    # which this status lacks (tests/node/test_receipt_proof.py has it).
    with pytest.raises(ProofError) as caught:
        client._verified_receipt(TX_IDS[1], {**status, "height": HEIGHT, "index": 1})
    assert caught.value.part == "unproven"
    with pytest.raises(ProofError, match="another place"):
        client._verified_receipt(TX_IDS[1], status)


@pytest.mark.parametrize("field", ["height", "time_ms", "request_count"])
def test_a_header_integer_too_large_to_hash_is_malformed(field: str) -> None:
    """JSON integers are unbounded; one past the wire's 64 bits is a
    malformed proof, not an encoder error (found by tests/fuzz)."""
    proof = copy.deepcopy(proof_json(1))
    proof["block"][field] = 2**64  # type: ignore[index]
    assert refused(TX_IDS[1], proof).part == "malformed"
    answer = block_json()
    answer["header"][field] = 2**64  # type: ignore[index]
    with pytest.raises(ProofError) as failure:
        verify_block(answer, VALIDATORS, CHAIN)
    assert failure.value.part == "malformed"

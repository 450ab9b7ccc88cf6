"""Checking a node's commit proofs knowing only the validator set (no I/O).

Theory of operation
-------------------
A participant should not have to trust the one node it talks to.  With a
committed transaction a node returns a proof: the block header, the commit
certificate (a quorum of validators' signed COMMIT votes over the header's
batch digest) and the Merkle path of the transaction id under the header's
``requests_root``.  :func:`verify_tx_proof` rebuilds the header from JSON and
checks, in order:

1. the header names this chain and hashes to the ``block_hash`` given;
2. the certificate holds a quorum of distinct validators of the genesis set,
   each signature valid over (view, height, batch digest) on this chain;
3. the transaction id is leaf ``index`` of ``count`` under ``requests_root``,
   and ``count`` is the header's request count.

A failure raises :class:`~node.sdk.errors.ProofError` naming the part.

What a certificate covers: the batch digest binds the height, the requests
root and count, the proposer's time and the executed state root.  The
previous block's hash and the derived block time are *not* signed (chain
links are derived by every replica, not proposed), so a single proof shows
*that* the transaction committed at that height, not the chain before it.
"""

from __future__ import annotations

from pathlib import Path

from consensus.blocks import BlockHeader, certificate_problem
from consensus.codec import DIGEST_SIZE, SIGNATURE_SIZE, Verifier, ed25519_verify
from consensus.merkle import merkle_root, verify_inclusion
from consensus.messages import Commit
from consensus.quorum import ValidatorSet
from node.sdk.errors import ProofError
from node.sdk.genesis import load_genesis

# A null batch (a view change's filler) carries an empty executed state root.
_STATE_ROOT_SIZES = (0, DIGEST_SIZE)


def validator_set_from_genesis(path: Path | str) -> ValidatorSet:
    """The validator set declared in a network's genesis.json."""
    return load_genesis(Path(path)).validator_set()


# ------------------------------------------------------------------ JSON reading


def _field(data: object, name: str, what: str) -> object:
    if not isinstance(data, dict) or name not in data:
        raise ProofError("malformed", f"{what} has no field {name!r}")
    return data[name]


# Heights, views, times and counts are at most 2**63 - 1 on the wire; JSON
# integers are unbounded, and a larger one could not even be hashed.
_MAX_INT = 2**63 - 1


def _int(data: object, name: str, what: str) -> int:
    value = _field(data, name, what)
    # bool is an int subclass; a JSON true is never a height.
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise ProofError("malformed", f"{what}.{name} must be an integer in 0..2**63-1")
    return value


def _hex(value: object, what: str, sizes: tuple[int, ...] = (DIGEST_SIZE,)) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) not in sizes:
        expected = " or ".join(str(size) for size in sizes)
        raise ProofError("malformed", f"{what} must be {expected} bytes as hex")
    return raw


def _hex_field(
    data: object, name: str, what: str, sizes: tuple[int, ...] = (DIGEST_SIZE,)
) -> bytes:
    return _hex(_field(data, name, what), f"{what}.{name}", sizes)


def header_from_json(data: object) -> BlockHeader:
    """Rebuild a :class:`BlockHeader` from its JSON form (bytes as hex)."""
    chain_id = _field(data, "chain_id", "block")
    if not isinstance(chain_id, str):
        raise ProofError("malformed", "block.chain_id must be a string")
    return BlockHeader(
        chain_id=chain_id,
        height=_int(data, "height", "block"),
        prev_block_hash=_hex_field(data, "prev_block_hash", "block"),
        time_ms=_int(data, "time_ms", "block"),
        proposer_time_ms=_int(data, "proposer_time_ms", "block"),
        requests_root=_hex_field(data, "requests_root", "block"),
        request_count=_int(data, "request_count", "block"),
        executed_height=_int(data, "executed_height", "block"),
        executed_state_root=_hex_field(data, "executed_state_root", "block", _STATE_ROOT_SIZES),
    )


def commits_from_json(data: object) -> list[Commit]:
    """Rebuild a commit certificate (a list of signed COMMIT votes) from JSON."""
    if not isinstance(data, list):
        raise ProofError("malformed", "certificate must be a list of commits")
    return [_commit_from_json(item, f"certificate[{n}]") for n, item in enumerate(data)]


def _commit_from_json(item: object, what: str) -> Commit:
    return Commit(
        view=_int(item, "view", what),
        height=_int(item, "height", what),
        digest=_hex_field(item, "digest", what),
        sender=_int(item, "sender", what),
        signature=_hex_field(item, "signature", what, (SIGNATURE_SIZE,)),
    )


def _path_from_json(data: object) -> list[bytes]:
    if not isinstance(data, list):
        raise ProofError("malformed", "path must be a list of hex digests")
    return [_hex(item, f"path[{n}]") for n, item in enumerate(data)]


# ------------------------------------------------------------------ checks


def check_header(header: BlockHeader, chain_id: str, block_hash: bytes | None = None) -> None:
    """Raise ProofError unless the header is on ``chain_id`` (and hashes to ``block_hash``)."""
    if header.chain_id != chain_id:
        raise ProofError("chain_id", f"block is on chain {header.chain_id!r}, not {chain_id!r}")
    if block_hash is not None and header.hash != block_hash:
        raise ProofError("block_hash", "the header does not hash to the block hash given")
    # Block time is the larger of the proposer's time and the previous block's.
    if header.time_ms < header.proposer_time_ms:
        raise ProofError("header", "block time is earlier than the proposer's time")


def check_certificate(
    header: BlockHeader,
    certificate: list[Commit],
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> None:
    """Raise ProofError unless a quorum of ``validators`` committed this header's batch."""
    problem = certificate_problem(
        header.height, header.batch_digest, certificate, validators, chain_id, verify
    )
    if problem is not None:
        raise ProofError("certificate", problem)


def check_inclusion(
    tx_id: bytes, header: BlockHeader, index: int, count: int, path: list[bytes]
) -> None:
    """Raise ProofError unless ``tx_id`` is leaf ``index`` of the header's requests."""
    if count != header.request_count:
        raise ProofError(
            "inclusion", f"proof counts {count} requests, the block holds {header.request_count}"
        )
    if not verify_inclusion(tx_id, index, count, path, header.requests_root):
        raise ProofError(
            "inclusion", f"transaction {tx_id.hex()} is not request {index} of this block"
        )


def verify_tx_proof(
    tx_id: bytes,
    proof_json: object,
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> BlockHeader:
    """Check a node's proof that ``tx_id`` committed; return the verified header.

    >>> header = verify_tx_proof(tx_id, status["proof"], validators, "provenet-local")
    >>> header.height
    42
    """
    header = header_from_json(_field(proof_json, "block", "proof"))
    check_header(header, chain_id, _hex_field(proof_json, "block_hash", "proof"))
    certificate = commits_from_json(_field(proof_json, "certificate", "proof"))
    check_certificate(header, certificate, validators, chain_id, verify)
    index = _int(proof_json, "index", "proof")
    count = _int(proof_json, "count", "proof")
    path = _path_from_json(_field(proof_json, "path", "proof"))
    check_inclusion(tx_id, header, index, count, path)
    return header


def verify_block(
    block_json: object,
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> BlockHeader:
    """Check a block answer (GET /v1/blocks/...) the same way; return its header.

    Beyond the header and certificate, the listed transaction ids must be
    exactly the block's requests (their Merkle root is the requests root),
    so a node cannot hide or invent a transaction in a block it serves.
    """
    header = header_from_json(_field(block_json, "header", "block answer"))
    check_header(header, chain_id, _hex_field(block_json, "hash", "block answer"))
    if _int(block_json, "height", "block answer") != header.height:
        raise ProofError("header", "block answer height differs from its header's")
    certificate = commits_from_json(_field(block_json, "certificate", "block answer"))
    check_certificate(header, certificate, validators, chain_id, verify)
    _check_listed_txs(header, _field(block_json, "txs", "block answer"))
    return header


def _check_listed_txs(header: BlockHeader, txs: object) -> None:
    if not isinstance(txs, list):
        raise ProofError("malformed", "block answer txs must be a list")
    ids = [_hex_field(item, "tx_id", f"txs[{n}]") for n, item in enumerate(txs)]
    if len(ids) != header.request_count or merkle_root(ids) != header.requests_root:
        raise ProofError("transactions", "the listed transactions are not the block's requests")

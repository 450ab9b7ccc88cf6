"""Checking a provenance bundle offline: no node, no network, only the genesis file.

Theory of operation
-------------------
A provenance bundle (built by :mod:`node.api.bundle`, served at
``GET /v1/bundle/{asset}``, written by ``provenet bundle ASSET -o FILE``) is
one canonical msgpack map::

    {"format": "provenet-bundle", "version": 2, "chain_id": str, "asset_id": str,
     "validators": [{"replica_id", "name", "org_id", "public_key"}, ...],
     "as_of": {"height": int, "anchor": ResultsAnchor,
               "reads": [{"key": bytes, "value": bytes or nil, "proof": StateProof}, ...]},
     "entries": [{"tx": envelope bytes, "tx_id": bytes, "header": SignedHeader,
                  "certificate": [Commit, ...], "index": int, "count": int,
                  "path": [bytes, ...], "receipt": ReceiptProof}, ...]}

    SignedHeader  = {"chain_id", "height", "proposer_time_ms", "requests_root",
                     "request_count", "executed_height", "executed_results_root"}
    Commit        = {"view", "height", "digest", "sender", "signature"}
    ResultsAnchor = {"results": {"height", "state_root", "receipts_root",
                                 "previous_results_root"},
                     "links": [[state_root, receipts_root], ...],
                     "header": SignedHeader, "certificate": [Commit, ...]}
    ReceiptProof  = {"leaf": {"tx_id", "status", "code", "writes_digest"},
                     "index": int, "count": int, "path": [bytes, ...],
                     "anchor": ResultsAnchor}
    StateProof    = {"levels": [[bitmap, siblings], ...], "other_leaf": [path, digest] or nil}

(node/sdk/results_proof.py, node/sdk/receipt_proof.py and
contracts/stateroot.py define the three proofs.)  Entries are the
transactions of the asset's provenance in chain order (height, then
position in the block).  Version 1 bundles (no receipts, no as-of reads)
are refused as ``format`` with a request to fetch the bundle again: they
could not show that a transaction succeeded, nor that a sanction was not
left out.  :func:`verify_bundle` checks, and raises :class:`BundleError`
naming the first thing that fails:

1. the file is exactly the canonical encoding of a map of that shape
   (the decoder re-encodes and compares, and every proof is re-encoded
   from what was read and compared again, so no byte can change unnoticed
   in the framing), and names the genesis file's chain;
2. the validator set in the bundle is the genesis file's, entry for entry
   (``validator_set``): a bundle cannot bring its own validators;
3. the as-of point: its anchor's certificate holds a quorum of the genesis
   validators and its results chain reaches ``as_of.height`` (``as_of``),
   and every read's proof holds, for its value or for the key's absence,
   against that height's certified state root (``state``);
4. for every entry: the envelope decodes (``transaction``), its signature is
   its sender's (``signature``), its id is the SHA-256 of the envelope
   (``tx_id``), the id is leaf ``index`` of ``count`` under the header's
   requests root (``inclusion``), and a quorum of the genesis validators
   signed COMMIT for that header's batch digest (``certificate``); its
   receipt is this transaction's, lies under the receipts root its anchor
   certifies for the entry's height, and says ``ok`` (``receipt``: a
   transaction the chain rejected is refused, with the code it was
   rejected with); its sender's key record and organisation record are
   among the as-of reads (``missing_read`` otherwise), and the key was
   valid at the entry's height: ``valid_from_height <= height`` and not
   revoked at or before it (``signer``).  Genesis keys go through the same
   check, and a key governance added later verifies like any other;
5. the transactions are replayed, in order, through the ledger's own
   contract code (:func:`contracts.runtime.execute`) on the genesis state
   (with each signer's proven key record, and the proven record of an
   organisation genesis does not have): each must succeed exactly as it
   did on chain, so a dropped transaction another depends on (an
   extraction, a mine's registration, a KP certificate's issuance or
   shipment, an import, a transfer) fails as ``missing_upstream_link``,
   naming the entry and, in the rule pack's own words, the rule that
   refused it; and the replay must create the asset;
6. every entry is part of the asset's provenance as the rule pack itself
   defines it on the replayed state (query ``diamonds.provenance_scope``,
   contracts/diamond_scope.py, the same query the builder uses): an event
   of an asset in scope, or the transaction behind a record the verdict
   rests on (a mine's registration, a certificate's issuance, a sanction or
   revocation in force); anything else fails as ``unrelated_entry``, so a
   bundle cannot be passed off as another asset's;
7. the compliance verdict is computed again by the same contract code
   (``diamonds.compliance``) over a :class:`~contracts.recorded_reads.ProvenState`
   holding only the proven as-of reads: a key it reads that the bundle does
   not prove fails as ``missing_read`` naming the key.  That verdict, as of
   ``as_of.height``, is the one reported.  The trace and the check of every
   Kimberley Process crossing and origin mine (``diamonds.trace``,
   ``diamonds.attestations``) are the rule pack's answers on the replayed
   state.  This module keeps no model of the diamond rules: what remains
   here is decoding within limits, the proofs, the replay and rendering
   (:mod:`node.sdk.render`).

Why every byte counts: the framing is canonical; a transaction's bytes are
covered by its sender's signature and its id; the id by the Merkle path; the
header by the certificate (only the header fields the validators sign are
carried: the previous block's hash and the derived block time are *not*
covered by a certificate, so a bundle leaves them out and times shown are
the proposer's signed time); a receipt leaf by its path and the certified
receipts root; a read by its state proof and the certified state root;
every commit in a certificate is checked, not just a quorum of them; the
validator list must equal the genesis file's; and the asset id must be the
one the entries are the provenance of.

What offline verification cannot see
------------------------------------
The verdict is proven as of ``as_of.height``, absence included: a sanction,
freeze or certificate revocation in force at that height is among the
reads the verdict depends on, so a builder that leaves it out (or proves
it absent against another root) is caught, whether or not the bundle holds
the transaction that recorded it.  What a bundle still cannot show:

* anything after ``as_of.height``.  Re-fetch the bundle, or ask a node for
  ``/v1/compliance?prove=1`` (``provenet verify --compliance``), for a
  later verdict; an old bundle is valid, only out of date, and says which
  height it is as of;
* the trace and the crossing and mine checks are replayed from the
  bundle's transactions, not proven from state: they show what the
  transactions recorded, and a builder could omit a transaction that
  changes only them (never the verdict, which is proven);
* governance history: a signer's key and organisation are checked
  through their records as of ``as_of.height`` (a key's validity heights
  survive its revocation), and the replay applies an organisation's roles
  as genesis had them (an organisation added later: as of
  ``as_of.height``), so a role governance changed between genesis and an
  entry can make a true history fail to replay;
* the validators are the genesis file's: a bundle of a chain whose
  validator set has changed since does not verify here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensus.blocks import SignedHeader, certificate_problem
from consensus.codec import (
    DIGEST_SIZE,
    PUBLIC_KEY_SIZE,
    DecodeError,
    Limits,
    ShapeError,
    Verifier,
    decode,
    digest,
    ed25519_verify,
    encode,
)
from consensus.merkle import verify_inclusion
from consensus.messages import Commit
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from contracts.diamond_scope import AT_HEIGHT
from contracts.errors import ErrorCode
from contracts.genesis import genesis_state
from contracts.orgs import KeyRecord, Org, key_key, nonce_key, org_key
from contracts.queries import query
from contracts.receipt import STATUS_OK, BlockContext, Event, Receipt
from contracts.recorded_reads import ProvenState, UnprovenRead
from contracts.records import record_from_bytes
from contracts.results import ReceiptLeaf
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.stateroot import StateProof, verify_state_proof
from contracts.tx import Transaction, decode_tx, verify_tx
from node.sdk.errors import ProofError, ProvenetError
from node.sdk.genesis import NetworkGenesis
from node.sdk.results_proof import ResultsAnchor

FORMAT = "provenet-bundle"
VERSION = 2
TOP_FIELDS = frozenset(
    {"format", "version", "chain_id", "asset_id", "validators", "as_of", "entries"}
)
ENTRY_FIELDS = frozenset(
    {"tx", "tx_id", "header", "certificate", "index", "count", "path", "receipt"}
)
RECEIPT_FIELDS = frozenset({"leaf", "index", "count", "path", "anchor"})
AS_OF_FIELDS = frozenset({"height", "anchor", "reads"})
READ_FIELDS = frozenset({"key", "value", "proof"})
VALIDATOR_FIELDS = frozenset({"replica_id", "name", "org_id", "public_key"})
# Bounds for reading a bundle file.  An entry is at least ~1,000 bytes with
# one validator (an envelope of 150 or more, its id, a signed header of
# seven fields, and its receipt proof: a leaf, an audit path and an anchor
# with its own signed header) plus ~140 per COMMIT, twice, and 34 per
# Merkle path digest; it holds about 80 values and 13 containers plus 11
# values and 1 container per COMMIT.  An as-of read is its key, value and
# state proof: measured, ~720 bytes in ~55 values and ~9 containers (the
# upper levels of a proof are full: 16 sibling hashes, 512 bytes, in one
# container).  So an honest bundle holds at most about one value per 12
# bytes and one container per 100 (the 10-step stone of
# tests/node/test_bundle.py: one per 22 and one per 115), and the bounds
# below leave half as much again.  32 MiB is some 10,000 entries with four
# validators (a provenance of a few thousand transactions is a few MB), and
# the most a hostile file can cost to decode is then about 3 s and 330 MiB
# (scripts/bench_decode.py; the limits are version 1's but the depth).
# It nests 7 deep: bundle > entries > entry > receipt > anchor >
# certificate > commit > field, and bundle > as_of > reads > read > proof >
# levels > level > field.
BUNDLE_MAX_BYTES = 32 * 1024 * 1024
BUNDLE_LIMITS = Limits(
    max_size_bytes=BUNDLE_MAX_BYTES,
    max_depth=7,
    max_collection_len=65_536,
    max_str_len=4096,
    max_bytes_len=1024 * 1024,
    max_objects=BUNDLE_MAX_BYTES // 8,
    max_containers=BUNDLE_MAX_BYTES // 64,
)

# What each kind of failure is called when printed.
KIND_TITLES = {
    "format": "malformed bundle",
    "chain": "wrong chain",
    "validator_set": "validator set",
    "transaction": "malformed transaction",
    "signature": "transaction signature",
    "tx_id": "transaction id",
    "inclusion": "Merkle inclusion",
    "certificate": "commit certificate",
    "header": "block header",
    "signer": "signer key not valid",
    "receipt": "transaction outcome",
    "as_of": "as-of certificate",
    "state": "state proof",
    "missing_read": "unproven read",
    "order": "entry order",
    "missing_upstream_link": "missing upstream link",
    "unrelated_entry": "unrelated entry",
}


class BundleError(ProvenetError):
    """A bundle does not verify; ``kind`` names the proof that failed (see KIND_TITLES)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__("bad_bundle", message, text=f"{KIND_TITLES.get(kind, kind)}: {message}")
        self.kind = kind


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Step:
    """One verified transaction of the provenance."""

    height: int
    index: int
    time_ms: int  # the proposer's signed time of the block
    tx_id: bytes
    org_id: str
    contract: str
    method: str
    args: dict[str, Any]

    @property
    def call(self) -> str:
        return f"{self.contract}.{self.method}"

    def summary(self) -> str:
        from node.sdk.render import call_summary

        return call_summary(self.method, self.args)

    def to_dict(self) -> dict[str, object]:
        return {
            "height": self.height,
            "index": self.index,
            "time_ms": self.time_ms,
            "tx_id": self.tx_id,
            "org_id": self.org_id,
            "contract": self.contract,
            "method": self.method,
            "args": self.args,
            "summary": self.summary(),
        }


@dataclass(frozen=True)
class Check:
    """An explicit compliance check computed from the transactions."""

    rule: str  # kp_crossing | mine_registration
    subject: str  # certificate or mine id
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "subject": self.subject, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    """What a verified bundle shows: the provenance, and the verdict as of one certified height."""

    asset_id: str
    chain_id: str
    as_of_height: int
    certified_by: int  # the block whose certificate certifies the as-of height's results
    as_of_time_ms: int  # the proposer's signed time of that block
    validators: int
    quorum: int
    proven_reads: int  # state reads proven at the as-of height
    steps: tuple[Step, ...]
    trace: dict[str, Any]
    compliance: dict[str, Any]  # proven as of as_of_height
    checks: tuple[Check, ...] = field(default=())

    @property
    def conflict_free(self) -> bool:
        return bool(self.compliance.get("conflict_free")) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "asset_id": self.asset_id,
            "chain_id": self.chain_id,
            "as_of_height": self.as_of_height,
            "certified_by": self.certified_by,
            "as_of_time_ms": self.as_of_time_ms,
            "validators": self.validators,
            "quorum": self.quorum,
            "proven_reads": self.proven_reads,
            "conflict_free": self.conflict_free,
            "steps": [step.to_dict() for step in self.steps],
            "checks": [check.to_dict() for check in self.checks],
            "trace": self.trace,
            "compliance": self.compliance,
        }

    def format(self) -> str:
        """The provenance and verdict as text (what ``provenet verify`` prints)."""
        from node.sdk.render import block_time, format_trace

        lines = [
            f"Bundle for {self.asset_id} on chain {self.chain_id}: {len(self.steps)} transactions, "
            "each signed by its sender with a key valid at its block, included in its block "
            f"(Merkle proof), committed by {self.quorum} of the {self.validators} genesis "
            "validators and proven to have succeeded (its receipt under certified results).",
            f"As of block {self.as_of_height} (certified by block {self.certified_by}, "
            f"{block_time(self.as_of_time_ms)} UTC): {self.proven_reads} state reads proven "
            "against that block's certified state root.",
            "",
            "Transactions, oldest first:",
        ]
        for step in self.steps:
            lines.append(
                f"  block {step.height:>6}  {block_time(step.time_ms):19}  {step.org_id:<10} "
                f"{step.call:<30} {step.summary()}".rstrip()
            )
        lines.extend(["", format_trace(self.trace, self.compliance), ""])
        lines.append("Checked from the transactions:")
        for check in self.checks:
            lines.append(
                f"  {'ok  ' if check.ok else 'FAIL'}  {check.rule} {check.subject}: {check.detail}"
            )
        verdict = "CONFLICT-FREE" if self.conflict_free else "NOT CONFLICT-FREE"
        lines.extend(
            [
                "",
                f"Offline verdict: {verdict} as of block {self.as_of_height}.",
                f"Proven as of block {self.as_of_height}: the compliance verdict (recomputed from "
                "the proven reads, so a sanction, freeze or revocation in force then is seen "
                "even if the bundle omits its transaction) and every signer's key.  Replayed "
                "from the bundle's transactions: the steps, the trace and the checks above.",
                f"Nothing after block {self.as_of_height} is visible offline: fetch the bundle "
                "again, or ask a node (provenet verify --compliance), for a later verdict.",
            ]
        )
        return "\n".join(lines)


# ------------------------------------------------------------------ reading


def _fail_format(message: str) -> BundleError:
    return BundleError("format", message)


def _map(value: object, fields: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail_format(f"{what} is not a map")
    if set(value) != fields:
        extra = sorted(set(value) - fields)
        missing = sorted(fields - set(value))
        raise _fail_format(f"{what} has fields {sorted(value)}: missing {missing}, unknown {extra}")
    return value


def _exact(value: object, expected: object) -> bool:
    """``value == expected`` with the same type: a decoded true is not 1."""
    return type(value) is type(expected) and value == expected


def _int(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _fail_format(f"{what} must be a non-negative integer")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _fail_format(f"{what} must be a string")
    return value


def _bytes(value: object, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
    if not isinstance(value, bytes) or (sizes is not None and len(value) not in sizes):
        expected = "bytes" if sizes is None else " or ".join(f"{size} bytes" for size in sizes)
        raise _fail_format(f"{what} must be {expected}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail_format(f"{what} must be a list")
    return value


# The header of an entry is the part of a block header a certificate covers.


def _header(value: object, what: str) -> SignedHeader:
    try:
        return SignedHeader.from_dict(value, what)
    except ShapeError as exc:
        raise _fail_format(str(exc)) from None


def _certificate(value: object, what: str) -> list[Commit]:
    try:
        return list(CommitCertificate.from_fields(value, what).commits)
    except ShapeError as exc:
        raise _fail_format(str(exc)) from None


@dataclass(frozen=True)
class _Signer:
    """An entry's sender as proven at the as-of height: its key and organisation records."""

    org: Org
    key_record: bytes  # the stored KeyRecord
    org_record: bytes  # the stored Org


@dataclass(frozen=True)
class _Entry:
    position: int
    tx: Transaction
    tx_id: bytes
    header: SignedHeader
    index: int
    signer: _Signer

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def org_id(self) -> str:
        return self.signer.org.org_id

    def describe(self) -> str:
        return (
            f"entry {self.position} ({self.tx.contract}.{self.tx.method} by {self.org_id} "
            f"at block {self.height})"
        )


@dataclass(frozen=True)
class _AsOf:
    """The certified as-of point: its height, the anchor, and the state its reads prove."""

    height: int
    anchor: ResultsAnchor
    view: ProvenState
    reads: int


# ------------------------------------------------------------------ the check


def verify_bundle(
    data: bytes, genesis: NetworkGenesis, verify: Verifier = ed25519_verify
) -> Verdict:
    """Check a bundle against a genesis file; return what it shows, or raise BundleError.

    No I/O: ``data`` is the file's bytes, ``genesis`` the loaded genesis.json
    (``node.sdk.genesis.load_genesis``).  See the module docstring for every check.

    >>> verdict = verify_bundle(Path("S-1.bundle").read_bytes(), load_genesis(Path("genesis.json")))
    >>> verdict.conflict_free, verdict.as_of_height
    (True, 42)
    """
    try:
        document = decode(data, BUNDLE_LIMITS)
    except DecodeError as exc:
        raise _fail_format(f"not a canonical Provenet bundle ({exc})") from None
    top = _top(document)
    chain_id = _str(top["chain_id"], "chain_id")
    if chain_id != genesis.chain_id:
        raise BundleError(
            "chain", f"the bundle is for chain {chain_id!r}, the genesis for {genesis.chain_id!r}"
        )
    asset_id = _str(top["asset_id"], "asset_id")
    validators = _check_validators(top["validators"], genesis)
    as_of = _check_as_of(top["as_of"], validators, chain_id, verify)
    entries: list[_Entry] = []
    for position, raw in enumerate(_list(top["entries"], "entries")):
        entry = _check_entry(position, raw, validators, chain_id, as_of, genesis, verify)
        if entries and (entry.height, entry.index) <= (entries[-1].height, entries[-1].index):
            raise BundleError(
                "order", f"{entry.describe()} is not after entry {position - 1} in chain order"
            )
        entries.append(entry)
    if entries and entries[-1].height > as_of.height:
        raise BundleError(
            "header",
            f"{entries[-1].describe()} is later than the bundle's as-of height {as_of.height}",
        )
    if len({entry.tx_id for entry in entries}) != len(entries):
        raise BundleError("order", "a transaction appears twice")
    replayed = _replay(entries, genesis, verify)
    replayed.ask("asset", asset_id)
    _check_scope(asset_id, replayed)
    compliance = _proven_compliance(asset_id, as_of)
    return _verdict(asset_id, replayed, genesis, validators, as_of, compliance)


def _top(document: object) -> dict[str, Any]:
    claimed = document if isinstance(document, dict) else {}
    if _exact(claimed.get("format"), FORMAT) and _exact(claimed.get("version"), 1):
        raise _fail_format(
            "this is a version 1 bundle, which proves neither that its transactions "
            "succeeded nor that no sanction or revocation was left out; fetch it again "
            f"(provenet bundle ASSET -o FILE) to get version {VERSION}"
        )
    top = _map(document, TOP_FIELDS, "bundle")
    # Exact types: in Python True == 1, so a version of true would pass `==`.
    if not (_exact(top["format"], FORMAT) and _exact(top["version"], VERSION)):
        raise _fail_format(
            f"format {top['format']!r} version {top['version']!r}, expected {FORMAT!r} {VERSION}"
        )
    return top


def _check_validators(value: object, genesis: NetworkGenesis) -> ValidatorSet:
    listed = []
    for n, item in enumerate(_list(value, "validators")):
        data = _map(item, VALIDATOR_FIELDS, f"validators[{n}]")
        listed.append(
            (
                _int(data["replica_id"], f"validators[{n}].replica_id"),
                _str(data["name"], f"validators[{n}].name"),
                _str(data["org_id"], f"validators[{n}].org_id"),
                _bytes(data["public_key"], f"validators[{n}].public_key", (PUBLIC_KEY_SIZE,)),
            )
        )
    expected = [
        (entry.replica_id, entry.name, entry.org_id, entry.public_key)
        for entry in sorted(genesis.validators, key=lambda entry: entry.replica_id)
    ]
    if len(listed) != len(expected):
        raise BundleError(
            "validator_set",
            f"the bundle lists {len(listed)} validators, the genesis file {len(expected)}",
        )
    for mine, theirs in zip(listed, expected, strict=True):
        if mine != theirs:
            differs = [
                name
                for name, a, b in zip(
                    ("replica_id", "name", "org_id", "public_key"), mine, theirs, strict=True
                )
                if a != b
            ]
            raise BundleError(
                "validator_set",
                f"validator {theirs[0]} ({theirs[1]}) differs from the genesis file's in "
                f"{', '.join(differs)}: the bundle was not checked against this network's validators",
            )
    return genesis.validator_set()


def _check_certified(
    header: SignedHeader,
    certificate: list[Commit],
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier,
    what: str,
) -> None:
    if header.chain_id != chain_id:
        raise BundleError("chain", f"{what} is on chain {header.chain_id!r}, not {chain_id!r}")
    problem = certificate_problem(
        header.height, header.batch_digest, certificate, validators, chain_id, verify
    )
    if problem is not None:
        raise BundleError(
            "certificate",
            f"{what} (block {header.height}) is not committed by the genesis validators: {problem}",
        )


def _canonical(read: object, raw: object, what: str) -> None:
    """What was read must encode to exactly the bytes it was read from: a
    reader that normalises (an empty code for none, say) would otherwise
    leave a second encoding of the same proof that verifies."""
    if encode(read) != encode(raw):
        raise _fail_format(f"{what} is not in its canonical form")


def _anchor(value: object, what: str) -> ResultsAnchor:
    try:
        anchor = ResultsAnchor.from_dict(value, what)
    except ShapeError as exc:
        raise _fail_format(str(exc)) from None
    _canonical(anchor.to_dict(), value, what)
    return anchor


def _check_as_of(value: object, validators: ValidatorSet, chain_id: str, verify: Verifier) -> _AsOf:
    data = _map(value, AS_OF_FIELDS, "as_of")
    height = _int(data["height"], "as_of.height")
    anchor = _anchor(data["anchor"], "as_of.anchor")
    try:
        results = anchor.verify(validators, chain_id, verify)
    except ProofError as exc:
        # A certificate is refused as one, wherever it is; a results chain that
        # does not reach the certified root is the as-of point's own failure.
        kind = {"certificate": "certificate", "chain_id": "chain"}.get(exc.part, "as_of")
        raise BundleError(
            kind, f"the as-of anchor is not certified by the genesis validators: {exc.message}"
        ) from None
    if results.height != height:
        raise BundleError(
            "as_of", f"the as-of anchor certifies height {results.height}, not {height}"
        )
    pairs: list[tuple[bytes, bytes | None]] = []
    for n, item in enumerate(_list(data["reads"], "as_of.reads")):
        what = f"as_of.reads[{n}]"
        read = _map(item, READ_FIELDS, what)
        key = _bytes(read["key"], f"{what}.key")
        stored = None if read["value"] is None else _bytes(read["value"], f"{what}.value")
        try:
            proof = StateProof.from_dict(read["proof"], f"{what}.proof")
        except (ShapeError, ValueError) as exc:
            raise _fail_format(str(exc)) from None
        _canonical(proof.to_dict(), read["proof"], f"{what}.proof")
        if pairs and key <= pairs[-1][0]:
            raise _fail_format(f"{what}: the reads are not in ascending key order")
        if not verify_state_proof(results.state_root, key, stored, proof):
            claim = "absence" if stored is None else "value"
            raise BundleError(
                "state",
                f"the {claim} of key {key!r} does not verify against the certified state root "
                f"of block {height}",
            )
        pairs.append((key, stored))
    return _AsOf(height, anchor, ProvenState(pairs), len(pairs))


def _check_entry(
    position: int,
    raw: object,
    validators: ValidatorSet,
    chain_id: str,
    as_of: _AsOf,
    genesis: NetworkGenesis,
    verify: Verifier,
) -> _Entry:
    where = f"entries[{position}]"
    data = _map(raw, ENTRY_FIELDS, where)
    envelope = _bytes(data["tx"], f"{where}.tx")
    claimed_id = _bytes(data["tx_id"], f"{where}.tx_id", (DIGEST_SIZE,))
    header = _header(data["header"], f"{where}.header")
    certificate = _certificate(data["certificate"], f"{where}.certificate")
    index = _int(data["index"], f"{where}.index")
    count = _int(data["count"], f"{where}.count")
    path = _digests(data["path"], f"{where}.path")
    what = f"entry {position} (block {header.height})"
    try:
        tx = decode_tx(envelope, genesis.genesis.limits)
    except DecodeError as exc:
        raise BundleError("transaction", f"{what}: the envelope does not decode ({exc})") from None
    what = f"entry {position} ({tx.contract}.{tx.method} at block {header.height})"
    if tx.chain_id != chain_id:
        raise BundleError("chain", f"{what} is a transaction for chain {tx.chain_id!r}")
    if not verify_tx(tx, verify):
        raise BundleError(
            "signature", f"{what}: the transaction's signature is not its sender's over its bytes"
        )
    tx_id = digest(envelope)
    if tx_id != claimed_id:
        raise BundleError(
            "tx_id",
            f"{what}: the envelope hashes to {tx_id.hex()}, the entry says {claimed_id.hex()}",
        )
    if count != header.request_count:
        raise BundleError(
            "inclusion",
            f"{what}: the proof counts {count} requests, the block holds {header.request_count}",
        )
    if not verify_inclusion(tx_id, index, count, path, header.requests_root):
        raise BundleError(
            "inclusion",
            f"{what}: transaction {tx_id.hex()[:16]} is not request {index} under the block's requests root",
        )
    _check_certified(header, certificate, validators, chain_id, verify, what)
    _check_receipt(data["receipt"], f"{where}.receipt", what, tx_id, header, validators, verify)
    signer = _signer(as_of, tx.sender, header.height, what)
    return _Entry(position, tx, tx_id, header, index, signer)


def _digests(value: object, what: str) -> list[bytes]:
    return [_bytes(item, what, (DIGEST_SIZE,)) for item in _list(value, what)]


def _check_receipt(
    value: object,
    where: str,
    what: str,
    tx_id: bytes,
    header: SignedHeader,
    validators: ValidatorSet,
    verify: Verifier,
) -> None:
    """The entry's receipt is its own, certified, and says the chain executed it."""
    data = _map(value, RECEIPT_FIELDS, where)
    try:
        leaf = ReceiptLeaf.read(data["leaf"], f"{where}.leaf", hex_bytes=False)
    except ShapeError as exc:
        raise _fail_format(str(exc)) from None
    _canonical(leaf.to_dict(), data["leaf"], f"{where}.leaf")
    index = _int(data["index"], f"{where}.index")
    count = _int(data["count"], f"{where}.count")
    path = _digests(data["path"], f"{where}.path")
    anchor = _anchor(data["anchor"], f"{where}.anchor")
    try:
        results = anchor.verify(validators, header.chain_id, verify)
    except ProofError as exc:
        raise BundleError(
            "receipt", f"{what}: the anchor of its receipt does not verify: {exc.message}"
        ) from None
    if results.height != header.height:
        raise BundleError(
            "receipt", f"{what}: its receipt's anchor certifies height {results.height}"
        )
    if leaf.tx_id != tx_id:
        raise BundleError(
            "receipt", f"{what}: the receipt proven is transaction {leaf.tx_id.hex()[:16]}'s"
        )
    if count != header.request_count or not verify_inclusion(
        leaf.encoded, index, count, path, results.receipts_root
    ):
        raise BundleError(
            "receipt",
            f"{what}: the receipt is not leaf {index} of block {header.height}'s certified receipts",
        )
    if leaf.status != STATUS_OK:
        raise BundleError(
            "receipt",
            f"{what}: the chain rejected it ({leaf.status}, {leaf.code}): it is no part of "
            "any history",
        )


def _signer(as_of: _AsOf, sender: bytes, height: int, what: str) -> _Signer:
    """The sender's key, valid at ``height`` by its record as of the as-of height."""
    short = sender.hex()[:16]
    try:
        key_raw = as_of.view.get(key_key(sender))
        if key_raw is None:
            raise BundleError(
                "signer",
                f"{what} is signed by key {short}, which no organisation holds as of block "
                f"{as_of.height} (proven absent)",
            )
        record = record_from_bytes(KeyRecord, key_raw)
        org_raw = as_of.view.get(org_key(record.org_id))
    except UnprovenRead as exc:
        raise BundleError(
            "missing_read",
            f"{what}: the bundle does not prove the record {exc.key!r} of its signer "
            f"(key {short}) as of block {as_of.height}",
        ) from None
    if org_raw is None:
        raise BundleError(
            "signer", f"{what}: key {short}'s organisation {record.org_id} is not a member"
        )
    revoked = record.revoked_from_height
    if record.valid_from_height > height or (revoked is not None and revoked <= height):
        until = "" if revoked is None else f", revoked from block {revoked}"
        raise BundleError(
            "signer",
            f"{what} is signed by key {short} of {record.org_id}, valid from block "
            f"{record.valid_from_height}{until}: not at block {height}",
        )
    return _Signer(record_from_bytes(Org, org_raw), key_raw, org_raw)


# ------------------------------------------------------------------ replay


def _missing(message: str) -> BundleError:
    return BundleError("missing_upstream_link", message)


def _replay(entries: list[_Entry], genesis: NetworkGenesis, verify: Verifier) -> _Replayed:
    """Every entry executed in order by the ledger's own contract code."""
    replayed = _Replayed(MemoryState(genesis_state(genesis.genesis)))
    for entry in entries:
        tx = entry.tx
        # The bundle holds only the sender's transactions in this provenance,
        # so its nonce count is set to the one each transaction carries; the
        # chain already enforced the nonce order.
        replayed.state.put(nonce_key(tx.sender), encode(tx.nonce))
        # Nor does it hold governance history: the sender's key is admitted by
        # its record as proven at the as-of height (checked valid at this
        # entry's height), and an organisation genesis lacks by its proven one.
        replayed.state.put(key_key(tx.sender), entry.signer.key_record)
        if replayed.state.get(org_key(entry.org_id)) is None:
            replayed.state.put(org_key(entry.org_id), entry.signer.org_record)
        context = BlockContext(
            height=entry.height, time_ms=entry.header.proposer_time_ms, proposer=""
        )
        receipt = execute(replayed.state, tx, context, verify)
        if not receipt.ok:
            raise _missing(
                f"{entry.describe()} does not follow from the bundle's earlier transactions: "
                f"the ledger's rules refuse it ({receipt.error}: {receipt.message}); a transaction "
                "it depends on is missing from the bundle"
            )
        replayed.add(entry, receipt)
    return replayed


class _Replayed:
    """The state after the replay, the entries, and the events each emitted."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.entries: list[_Entry] = []
        self.emitted: dict[tuple[str, str], list[tuple[_Entry, Event]]] = {}

    def add(self, entry: _Entry, receipt: Receipt) -> None:
        self.entries.append(entry)
        for event in receipt.events:
            self.emitted.setdefault((event.contract, event.kind), []).append((entry, event))

    def ask(self, name: str, asset_id: str) -> dict[str, Any]:
        """The diamond pack's own answer to query ``name`` about the asset."""
        answer = query(self.state, "diamonds", name, {"asset_id": asset_id})
        if not answer["ok"]:
            if answer["error"] == ErrorCode.UNKNOWN_ASSET:
                raise _missing(f"no transaction in the bundle creates asset {asset_id}")
            raise _missing(f"the replayed bundle has no {name} of {asset_id}: {answer['message']}")
        result = answer["result"]
        assert isinstance(result, dict)
        return result

    def recorders(self, record: dict[str, Any]) -> list[_Entry]:
        """The entries whose transactions recorded ``record`` (a scope record)."""
        height, wanted = record["height"], record["attributes"].items()
        return [
            entry
            for entry, event in self.emitted.get((record["contract"], record["kind"]), [])
            if (entry.height == height if record["at"] == AT_HEIGHT else entry.height >= height)
            and all(_exact(event.attributes.get(name), value) for name, value in wanted)
        ]


def _check_scope(asset_id: str, replayed: _Replayed) -> None:
    """Every entry is a transaction the pack counts in the asset's provenance."""
    scope = replayed.ask("provenance_scope", asset_id)
    if scope["truncated"]:
        raise _fail_format(
            f"the provenance of {asset_id} has more assets than the chain's max_trace_nodes, "
            "so no node builds a bundle of it"
        )
    wanted = set(scope["tx_ids"])
    wanted.update(entry.tx_id for r in scope["records"] for entry in replayed.recorders(r))
    for entry in replayed.entries:
        if entry.tx_id not in wanted:
            raise BundleError(
                "unrelated_entry", f"{entry.describe()} is not part of the provenance of {asset_id}"
            )


# ------------------------------------------------------------------ verdict


def _proven_compliance(asset_id: str, as_of: _AsOf) -> dict[str, Any]:
    """The pack's verdict recomputed over the reads proven at the as-of height only."""
    try:
        answer = query(as_of.view, "diamonds", "compliance", {"asset_id": asset_id})
    except UnprovenRead as exc:
        raise BundleError(
            "missing_read",
            f"the verdict as of block {as_of.height} reads key {exc.key!r}, which the bundle "
            "does not prove",
        ) from None
    if not answer["ok"]:
        raise BundleError(
            "missing_read",
            f"the proven reads as of block {as_of.height} give no verdict for {asset_id}: "
            f"{answer['error']}: {answer['message']}",
        )
    result = answer["result"]
    assert isinstance(result, dict), "a compliance answer is a map"
    return result


def _verdict(
    asset_id: str,
    replayed: _Replayed,
    genesis: NetworkGenesis,
    validators: ValidatorSet,
    as_of: _AsOf,
    compliance: dict[str, Any],
) -> Verdict:
    trace = replayed.ask("trace", asset_id)
    steps = tuple(
        Step(
            height=entry.height,
            index=entry.index,
            time_ms=entry.header.proposer_time_ms,
            tx_id=entry.tx_id,
            org_id=entry.org_id,
            contract=entry.tx.contract,
            method=entry.tx.method,
            args=dict(entry.tx.args),
        )
        for entry in replayed.entries
    )
    return Verdict(
        asset_id=asset_id,
        chain_id=genesis.chain_id,
        as_of_height=as_of.height,
        certified_by=as_of.anchor.header.height,
        as_of_time_ms=as_of.anchor.header.proposer_time_ms,
        validators=validators.n,
        quorum=validators.quorum,
        proven_reads=as_of.reads,
        steps=steps,
        trace=trace,
        compliance=compliance,
        checks=_checks(replayed.ask("attestations", asset_id), replayed),
    )


def _checks(attestations: dict[str, Any], replayed: _Replayed) -> tuple[Check, ...]:
    """The pack's attestations as checks, in the order the bundle recorded them."""
    positions = {entry.tx_id: entry.position for entry in replayed.entries}
    found: list[tuple[int, Check]] = []
    for mine in attestations["mine_registrations"]:
        registration = replayed.recorders(mine["registration"])
        assert registration, "the replay registered every mine it knows"
        found.append((registration[0].position, _mine_check(mine)))
    for crossing in attestations["kp_crossings"]:
        found.append((positions[crossing["confirmed_tx_id"]], _crossing_check(crossing)))
    return tuple(check for _, check in sorted(found, key=lambda item: item[0]))


def _mine_check(mine: dict[str, Any]) -> Check:
    country = mine["country"]
    how = {
        "kp_authority": f"KP authority of {country}",
        "regulator": "a regulator",
    }.get(mine["entitled_as"], f"neither the KP authority of {country} nor a regulator")
    return Check(
        "mine_registration",
        mine["mine_id"],
        bool(mine["entitled_as"]),
        f"in {country}, registered by {mine['registered_by']} ({how}) "
        f"at block {mine['registered_height']}",
    )


def _crossing_check(crossing: dict[str, Any]) -> Check:
    origin, destination = crossing["origin_country"], crossing["destination_country"]
    issuer_ok, confirmer_ok = crossing["issuer_is_authority"], crossing["confirmer_is_authority"]
    issuer_is = f"KP authority of {origin}" if issuer_ok else "NOT the exporting authority"
    confirmer_is = (
        f"KP authority of {destination}" if confirmer_ok else "NOT the importing authority"
    )
    return Check(
        "kp_crossing",
        crossing["cert_id"],
        bool(issuer_ok and confirmer_ok),
        f"{', '.join(crossing['parcels'])} {origin} -> {destination}: "
        f"issued by {crossing['issuer']} ({issuer_is}) at block {crossing['issued_height']}, "
        f"import confirmed by {crossing['confirmed_by']} ({confirmer_is}) "
        f"at block {crossing['confirmed_height']}",
    )

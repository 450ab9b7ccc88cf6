"""Checking a provenance bundle offline: no node, no network, only the genesis file.

Theory of operation
-------------------
A provenance bundle (built by :mod:`node.api.bundle`, served at
``GET /v1/bundle/{asset}``, written by ``provenet bundle ASSET -o FILE``) is
one canonical msgpack map::

    {"format": "provenet-bundle", "version": 1, "chain_id": str, "asset_id": str,
     "validators": [{"replica_id", "name", "org_id", "public_key"}, ...],
     "as_of": {"header": SignedHeader, "certificate": [Commit, ...]},
     "entries": [{"tx": envelope bytes, "tx_id": bytes, "header": SignedHeader,
                  "certificate": [Commit, ...], "index": int, "count": int,
                  "path": [bytes, ...]}, ...]}

    SignedHeader = {"chain_id", "height", "proposer_time_ms", "requests_root",
                    "request_count", "executed_height", "executed_results_root"}
    Commit       = {"view", "height", "digest", "sender", "signature"}

Entries are the transactions of the asset's provenance in chain order
(height, then position in the block).  :func:`verify_bundle` checks, and
raises :class:`BundleError` naming the first thing that fails:

1. the file is exactly the canonical encoding of a map of that shape
   (the decoder re-encodes and compares, so no byte can change unnoticed
   in the framing), and names the genesis file's chain;
2. the validator set in the bundle is the genesis file's, entry for entry
   (``validator_set``): a bundle cannot bring its own validators;
3. for every entry: the envelope decodes (``transaction``), its signature is
   its sender's (``signature``), its id is the SHA-256 of the envelope
   (``tx_id``), the id is leaf ``index`` of ``count`` under the header's
   requests root (``inclusion``), and a quorum of the genesis validators
   signed COMMIT for that header's batch digest (``certificate``); the
   sender's key belongs to an organisation of the genesis (``signer``);
4. the transactions are replayed, in order, through the ledger's own
   contract code (:func:`contracts.runtime.execute`) on the genesis state:
   each must succeed exactly as it did on chain, so a dropped transaction
   another depends on (an extraction, a mine's registration, a KP
   certificate's issuance or shipment, an import, a transfer) or an
   inserted refused transaction fails as ``missing_upstream_link``, naming
   the entry and, in the rule pack's own words, the rule that refused it;
   and the replay must create the asset;
5. every entry is part of the asset's provenance as the rule pack itself
   defines it on the replayed state (query ``diamonds.provenance_scope``,
   contracts/diamond_scope.py, the same query the builder uses): an event
   of an asset in scope, or the transaction behind a record the verdict
   rests on (a mine's registration, a certificate's issuance, a sanction or
   revocation in force); anything else fails as ``unrelated_entry``, so a
   bundle cannot be passed off as another asset's;
6. every semantic fact of the verdict is the rule pack's own answer on the
   replayed state: the compliance verdict and trace (``diamonds.compliance``,
   ``diamonds.trace``) and the check of every Kimberley Process crossing
   (issued by the exporting country's KP authority, confirmed by the
   importing one's) and every origin mine (registered by its country's KP
   authority or a regulator) (``diamonds.attestations``).  This module keeps
   no model of the diamond rules: what remains here is decoding within
   limits, the proofs, the replay and rendering (:mod:`node.sdk.render`).

Why every byte counts: the framing is canonical; a transaction's bytes are
covered by its sender's signature and its id; the id by the Merkle path; the
header by the certificate (only the header fields the validators sign are
carried: the previous block's hash and the derived block time are *not*
covered by a certificate, so a bundle leaves them out and times shown are
the proposer's signed time); every commit in a certificate is checked, not
just a quorum of them; the validator list must equal the genesis file's;
and the asset id must be the one the entries are the provenance of.

What offline verification cannot see
------------------------------------
A bundle proves that every transaction it holds was committed, and that
together they form a valid history of the asset.  It cannot prove that
nothing was left out: an honest builder adds every sanction, freeze or
certificate revocation in force when it builds the bundle (and the replay
applies them), but a dishonest one can omit such a transaction, or one that
caused an included transaction to be refused on chain, and the bundle still
verifies.  Proving absence needs proofs against a certified state root,
which this format version does not carry.  So a bundle shows presence,
never absence, and an auditor who must rule out a sanction asks a node it
trusts (its own observer) for ``/v1/compliance``; nothing after the
``as_of`` block is visible offline either.  Re-fetch the bundle, or ask a node
for ``/v1/compliance``, for the current verdict.  Signers are authenticated
against the genesis organisations: a key or organisation added later by
governance makes the bundle fail as ``signer`` (this format version does not
carry governance history).
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
from contracts.genesis import GenesisOrg, genesis_state
from contracts.orgs import nonce_key
from contracts.queries import query
from contracts.receipt import BlockContext, Event, Receipt
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction, decode_tx, verify_tx
from node.sdk.errors import ProvenetError
from node.sdk.genesis import NetworkGenesis

FORMAT = "provenet-bundle"
VERSION = 1
TOP_FIELDS = frozenset(
    {"format", "version", "chain_id", "asset_id", "validators", "as_of", "entries"}
)
ENTRY_FIELDS = frozenset({"tx", "tx_id", "header", "certificate", "index", "count", "path"})
VALIDATOR_FIELDS = frozenset({"replica_id", "name", "org_id", "public_key"})
# Bounds for reading a bundle file.  An entry is at least ~420 bytes (an
# envelope of 150 or more, its id, a signed header of seven fields) plus
# ~140 per COMMIT and 34 per Merkle path digest, and holds 29 values and 4
# containers plus 11 values and 1 container per COMMIT and 1 value per
# digest: so an honest bundle holds at most one value per 12 bytes and one
# container per 106 (whatever the number of validators), and the bounds
# below leave half as much again.  32 MiB is some 22,000 entries with four
# validators (a provenance of a few thousand transactions is a few MB), and
# the most a hostile file can cost to decode is then about 3 s and 330 MiB
# (scripts/bench_decode.py).
# It nests 5 deep: bundle > entries > entry > certificate > commit > field.
BUNDLE_MAX_BYTES = 32 * 1024 * 1024
BUNDLE_LIMITS = Limits(
    max_size_bytes=BUNDLE_MAX_BYTES,
    max_depth=5,
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
    "signer": "unknown signer",
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
    """What a verified bundle shows: the provenance and the compliance verdict."""

    asset_id: str
    chain_id: str
    as_of_height: int
    as_of_time_ms: int
    validators: int
    quorum: int
    steps: tuple[Step, ...]
    trace: dict[str, Any]
    compliance: dict[str, Any]
    checks: tuple[Check, ...] = field(default=())

    @property
    def conflict_free(self) -> bool:
        return bool(self.compliance.get("conflict_free")) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "asset_id": self.asset_id,
            "chain_id": self.chain_id,
            "as_of_height": self.as_of_height,
            "as_of_time_ms": self.as_of_time_ms,
            "validators": self.validators,
            "quorum": self.quorum,
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
            "each signed by its sender, included in its block (Merkle proof) and committed by "
            f"{self.quorum} of the {self.validators} genesis validators; "
            f"chain as of block {self.as_of_height} ({block_time(self.as_of_time_ms)} UTC).",
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
                f"Offline verdict: {verdict} (from the transactions in the bundle, "
                f"committed up to block {self.as_of_height}).",
                "A bundle proves what it holds, not what it leaves out: a sanction or revocation "
                "the builder omitted, or recorded after that block, is not visible offline; "
                "ask your own observer (/v1/compliance) to rule one out.",
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
class _Entry:
    position: int
    tx: Transaction
    tx_id: bytes
    header: SignedHeader
    index: int
    org: GenesisOrg

    @property
    def height(self) -> int:
        return self.header.height

    def describe(self) -> str:
        return (
            f"entry {self.position} ({self.tx.contract}.{self.tx.method} by {self.org.org_id} "
            f"at block {self.height})"
        )


# ------------------------------------------------------------------ the check


def verify_bundle(
    data: bytes, genesis: NetworkGenesis, verify: Verifier = ed25519_verify
) -> Verdict:
    """Check a bundle against a genesis file; return what it shows, or raise BundleError.

    No I/O: ``data`` is the file's bytes, ``genesis`` the loaded genesis.json
    (``node.sdk.genesis.load_genesis``).  See the module docstring for every check.

    >>> verdict = verify_bundle(Path("S-1.bundle").read_bytes(), load_genesis(Path("genesis.json")))
    >>> verdict.conflict_free
    True
    """
    try:
        document = decode(data, BUNDLE_LIMITS)
    except DecodeError as exc:
        raise _fail_format(f"not a canonical Provenet bundle ({exc})") from None
    top = _map(document, TOP_FIELDS, "bundle")
    # Exact types: in Python True == 1, so a version of true would pass `==`.
    if not (_exact(top["format"], FORMAT) and _exact(top["version"], VERSION)):
        raise _fail_format(
            f"format {top['format']!r} version {top['version']!r}, expected {FORMAT!r} {VERSION}"
        )
    chain_id = _str(top["chain_id"], "chain_id")
    if chain_id != genesis.chain_id:
        raise BundleError(
            "chain", f"the bundle is for chain {chain_id!r}, the genesis for {genesis.chain_id!r}"
        )
    asset_id = _str(top["asset_id"], "asset_id")
    validators = _check_validators(top["validators"], genesis)
    as_of = _map(top["as_of"], frozenset({"header", "certificate"}), "as_of")
    as_of_header = _header(as_of["header"], "as_of.header")
    _check_certified(as_of_header, _certificate(as_of["certificate"], "as_of.certificate"),
                     validators, chain_id, verify, "the as_of block")  # fmt: skip
    signers = {key: org for org in genesis.genesis.organisations for key in org.keys}
    entries: list[_Entry] = []
    for position, raw in enumerate(_list(top["entries"], "entries")):
        entry = _check_entry(position, raw, validators, chain_id, signers, genesis, verify)
        if entries and (entry.height, entry.index) <= (entries[-1].height, entries[-1].index):
            raise BundleError(
                "order", f"{entry.describe()} is not after entry {position - 1} in chain order"
            )
        entries.append(entry)
    if entries and entries[-1].height > as_of_header.height:
        raise BundleError(
            "header",
            f"{entries[-1].describe()} is later than the bundle's as_of block {as_of_header.height}",
        )
    if len({entry.tx_id for entry in entries}) != len(entries):
        raise BundleError("order", "a transaction appears twice")
    replayed = _replay(entries, genesis, verify)
    replayed.ask("asset", asset_id)
    _check_scope(asset_id, replayed)
    return _verdict(asset_id, replayed, genesis, validators, as_of_header)


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


def _check_entry(
    position: int,
    raw: object,
    validators: ValidatorSet,
    chain_id: str,
    signers: dict[bytes, GenesisOrg],
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
    path = [
        _bytes(item, f"{where}.path", (DIGEST_SIZE,))
        for item in _list(data["path"], f"{where}.path")
    ]
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
    org = signers.get(tx.sender)
    if org is None:
        raise BundleError(
            "signer", f"{what} is signed by key {tx.sender.hex()[:16]}, no genesis organisation's"
        )
    return _Entry(position, tx, tx_id, header, index, org)


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
        context = BlockContext(
            height=entry.height, time_ms=entry.header.proposer_time_ms, proposer=""
        )
        receipt = execute(replayed.state, tx, context, verify)
        if not receipt.ok:
            raise _missing(
                f"{entry.describe()} does not follow from the bundle's earlier transactions: "
                f"the ledger's rules refuse it ({receipt.error}: {receipt.message}); a transaction "
                "it depends on is missing from the bundle, or it was refused on chain"
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


def _verdict(
    asset_id: str,
    replayed: _Replayed,
    genesis: NetworkGenesis,
    validators: ValidatorSet,
    as_of: SignedHeader,
) -> Verdict:
    compliance = replayed.ask("compliance", asset_id)
    trace = replayed.ask("trace", asset_id)
    steps = tuple(
        Step(
            height=entry.height,
            index=entry.index,
            time_ms=entry.header.proposer_time_ms,
            tx_id=entry.tx_id,
            org_id=entry.org.org_id,
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
        as_of_time_ms=as_of.proposer_time_ms,
        validators=validators.n,
        quorum=validators.quorum,
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

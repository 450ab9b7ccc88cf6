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
                    "request_count", "executed_height", "executed_state_root"}
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
4. the provenance is rebuilt from the transactions alone: the asset's
   creating transaction, and recursively every parent's (extract, split,
   merge, cut), the registration of every origin mine, and the issuance and
   shipment of every KP certificate used, must be in the bundle
   (``missing_upstream_link``); and nothing else may be (``unrelated_entry``),
   so a bundle cannot be passed off as another asset's;
5. the transactions are replayed, in order, through the ledger's own
   contract code (:func:`contracts.runtime.execute`) on the genesis state:
   each must succeed exactly as it did on chain, so a dropped transfer or
   import (the next owner could not have acted) or an inserted refused
   transaction fails as ``missing_upstream_link``, naming the entry and the
   rule that refused it;
6. the compliance verdict and trace are the ledger's own queries
   (``diamonds.compliance``, ``diamonds.trace``) on the replayed state, plus
   an explicit check of every Kimberley Process crossing (issued by the
   exporting country's KP authority, confirmed by the importing one's) and
   every origin mine (registered by its country's KP authority or a
   regulator).

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.blocks import certificate_problem
from consensus.codec import (
    DIGEST_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    DecodeError,
    Limits,
    Verifier,
    decode,
    digest,
    ed25519_verify,
    encode,
)
from consensus.merkle import verify_inclusion
from consensus.messages import Commit, batch_digest_of
from consensus.quorum import ValidatorSet
from contracts.genesis import GenesisOrg, genesis_state
from contracts.orgs import nonce_key
from contracts.queries import query
from contracts.receipt import BlockContext
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
HEADER_FIELDS = frozenset(
    {
        "chain_id",
        "height",
        "proposer_time_ms",
        "requests_root",
        "request_count",
        "executed_height",
        "executed_state_root",
    }
)
COMMIT_FIELDS = frozenset({"view", "height", "digest", "sender", "signature"})
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

# Diamond methods whose ``asset_id`` argument names the asset they act on.
_ACTS_ON_ASSET = frozenset({"transfer", "grade", "sell", "freeze", "unfreeze", "split", "cut"})
_CROSSING_METHODS = frozenset({"ship", "confirm_import", "reject_import"})
_SANCTION_METHODS = frozenset({"sanction", "lift_sanction"})


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
        return _summarise(self.method, self.args)

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


@dataclass(frozen=True)
class _Header:
    chain_id: str
    height: int
    proposer_time_ms: int
    requests_root: bytes
    request_count: int
    executed_height: int
    executed_state_root: bytes

    @property
    def batch_digest(self) -> bytes:
        return batch_digest_of(
            self.height,
            self.proposer_time_ms,
            self.requests_root,
            self.request_count,
            self.executed_height,
            self.executed_state_root,
        )


def _header(value: object, what: str) -> _Header:
    data = _map(value, HEADER_FIELDS, what)
    return _Header(
        chain_id=_str(data["chain_id"], f"{what}.chain_id"),
        height=_int(data["height"], f"{what}.height"),
        proposer_time_ms=_int(data["proposer_time_ms"], f"{what}.proposer_time_ms"),
        requests_root=_bytes(data["requests_root"], f"{what}.requests_root", (DIGEST_SIZE,)),
        request_count=_int(data["request_count"], f"{what}.request_count"),
        executed_height=_int(data["executed_height"], f"{what}.executed_height"),
        # A null batch (a view change's filler) carries an empty state root.
        executed_state_root=_bytes(
            data["executed_state_root"], f"{what}.executed_state_root", (0, DIGEST_SIZE)
        ),
    )


def _certificate(value: object, what: str) -> list[Commit]:
    commits = []
    for n, item in enumerate(_list(value, what)):
        where = f"{what}[{n}]"
        data = _map(item, COMMIT_FIELDS, where)
        commits.append(
            Commit(
                view=_int(data["view"], f"{where}.view"),
                height=_int(data["height"], f"{where}.height"),
                digest=_bytes(data["digest"], f"{where}.digest", (DIGEST_SIZE,)),
                sender=_int(data["sender"], f"{where}.sender"),
                signature=_bytes(data["signature"], f"{where}.signature", (SIGNATURE_SIZE,)),
            )
        )
    return commits


@dataclass(frozen=True)
class _Entry:
    position: int
    tx: Transaction
    tx_id: bytes
    header: _Header
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
    (``node.runtime.config.load_genesis``).  See the module docstring for every check.

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
    _Provenance(asset_id, entries, genesis).check()
    return _replay(asset_id, entries, genesis, validators, as_of_header, verify)


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
    header: _Header,
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


# ------------------------------------------------------------------ provenance structure


def _arg_str(tx: Transaction, name: str) -> str | None:
    value = tx.args.get(name)
    return value if isinstance(value, str) else None


def _arg_strs(tx: Transaction, name: str) -> list[str]:
    value = tx.args.get(name)
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _arg_outputs(tx: Transaction, name: str) -> list[str]:
    value = tx.args.get(name)
    if not isinstance(value, list):
        return []
    return [
        item["asset_id"]
        for item in value
        if isinstance(item, dict) and isinstance(item.get("asset_id"), str)
    ]


def _created(tx: Transaction) -> tuple[list[str], list[str]]:
    """(assets a diamond transaction creates, their parents)."""
    match tx.method:
        case "extract":
            return [a for a in [_arg_str(tx, "parcel_id")] if a], []
        case "split":
            return _arg_outputs(tx, "outputs"), [a for a in [_arg_str(tx, "asset_id")] if a]
        case "merge":
            return [a for a in [_arg_str(tx, "output_id")] if a], _arg_strs(tx, "inputs")
        case "cut":
            return _arg_outputs(tx, "stones"), [a for a in [_arg_str(tx, "asset_id")] if a]
    return [], []


def _missing(message: str) -> BundleError:
    return BundleError("missing_upstream_link", message)


class _Provenance:
    """The asset's provenance graph as the transactions describe it.

    The assets whose history the replay needs (``assets``) are the target's
    upstream closed under two more rules: every parcel travelling under a
    KP certificate with one of them (a certificate is issued, shipped and
    confirmed for all its parcels at once), and every input merged with one
    of them.
    """

    def __init__(self, asset_id: str, entries: list[_Entry], genesis: NetworkGenesis) -> None:
        self.asset_id = asset_id
        self.entries = entries
        self.orgs = {org.org_id: org for org in genesis.genesis.organisations}
        self.diamond = [entry for entry in entries if entry.tx.contract == "diamonds"]
        self.creator: dict[str, _Entry] = {}
        self.parents: dict[str, list[str]] = {}
        for entry in self.diamond:
            made, parents = _created(entry.tx)
            for asset in made:
                self.creator.setdefault(asset, entry)
                self.parents.setdefault(asset, parents)
        self.issued = self._by_cert({"issue_kp_certificate"})
        self.shipped = self._by_cert({"ship"})
        # Certificates naming an asset among their parcels, merges among their inputs.
        self.grouping: dict[str, list[_Entry]] = {}
        for entry in self.diamond:
            if entry.tx.method == "issue_kp_certificate":
                grouped = _arg_strs(entry.tx, "parcels")
            elif entry.tx.method == "merge":
                grouped = _arg_strs(entry.tx, "inputs")
            else:
                continue
            for asset in set(grouped):
                self.grouping.setdefault(asset, []).append(entry)

    def _by_cert(self, methods: set[str]) -> dict[str, _Entry]:
        found: dict[str, _Entry] = {}
        for entry in self.diamond:
            cert_id = _arg_str(entry.tx, "cert_id")
            if entry.tx.method in methods and cert_id is not None:
                found.setdefault(cert_id, entry)
        return found

    def check(self) -> None:
        if self.asset_id not in self.creator:
            raise _missing(f"no transaction in the bundle creates asset {self.asset_id}")
        self._check_certificates()
        assets, certs = self._closure()
        mines = self._check_mines(assets)
        self._check_relevance(assets, certs, mines)

    def _check_certificates(self) -> None:
        for entry in self.diamond:
            cert_id = _arg_str(entry.tx, "cert_id")
            if entry.tx.method not in _CROSSING_METHODS or cert_id is None:
                continue
            if cert_id not in self.issued:
                raise _missing(
                    f"KP certificate {cert_id}, used by {entry.describe()}, "
                    "has no issuance in the bundle"
                )
            if entry.tx.method != "ship" and cert_id not in self.shipped:
                raise _missing(
                    f"the shipment under KP certificate {cert_id}, which {entry.describe()} "
                    "settles, is not in the bundle"
                )

    def _closure(self) -> tuple[set[str], set[str]]:
        assets: set[str] = set()
        certs: set[str] = set()
        queue: list[tuple[str, str]] = [(self.asset_id, "the bundle's asset")]
        while queue:
            asset, why = queue.pop()
            if asset in assets:
                continue
            if asset not in self.creator:
                raise _missing(f"asset {asset}, {why}, has no creating transaction in the bundle")
            assets.add(asset)
            made_by = self.creator[asset]
            queue.extend(
                (parent, f"parent of {asset} ({made_by.describe()})")
                for parent in self.parents[asset]
            )
            for entry in self.grouping.get(asset, []):
                tx = entry.tx
                if tx.method == "issue_kp_certificate":
                    certs.add(_arg_str(tx, "cert_id") or "")
                    queue.extend(
                        (parcel, f"certified with {asset} ({entry.describe()})")
                        for parcel in _arg_strs(tx, "parcels")
                    )
                else:
                    queue.extend(
                        (other, f"merged with {asset} ({entry.describe()})")
                        for other in _arg_strs(tx, "inputs")
                    )
        return assets, certs

    def _check_mines(self, assets: set[str]) -> set[str]:
        registered = {
            _arg_str(entry.tx, "mine_id")
            for entry in self.diamond
            if entry.tx.method == "register_mine"
        }
        mines: set[str] = set()
        for asset in sorted(assets):
            entry = self.creator[asset]
            mine_id = _arg_str(entry.tx, "mine_id")
            if entry.tx.method != "extract" or mine_id is None:
                continue
            if mine_id not in registered:
                raise _missing(
                    f"mine {mine_id}, origin of {asset} ({entry.describe()}), "
                    "has no registration in the bundle"
                )
            mines.add(mine_id)
        return mines

    def _check_relevance(self, assets: set[str], certs: set[str], mines: set[str]) -> None:
        relevant: set[int] = {self.creator[asset].position for asset in assets}
        reports: set[str] = set()
        for entry in self.diamond:
            if self._concerns(entry.tx, assets, certs, mines):
                relevant.add(entry.position)
                if entry.tx.method == "grade":
                    reports.add(_arg_str(entry.tx, "report_id") or "")
        involved = self._involved([e for e in self.entries if e.position in relevant], mines)
        for entry in self.entries:
            if entry.position in relevant:
                continue
            tx = entry.tx
            kind, target = _arg_str(tx, "kind"), _arg_str(tx, "target")
            if tx.contract == "diamonds" and (
                (tx.method in _SANCTION_METHODS and (kind, target) in involved)
                or (
                    tx.method == "revoke_certificate"
                    and ((kind == "kp" and _arg_str(tx, "cert_id") in certs)
                         or (kind == "grading" and _arg_str(tx, "cert_id") in reports))
                )
            ):  # fmt: skip
                continue
            raise BundleError(
                "unrelated_entry",
                f"{entry.describe()} is not part of the provenance of {self.asset_id}",
            )

    @staticmethod
    def _concerns(tx: Transaction, assets: set[str], certs: set[str], mines: set[str]) -> bool:
        method = tx.method
        if method in _ACTS_ON_ASSET:
            return _arg_str(tx, "asset_id") in assets
        if method == "merge":
            return bool(assets.intersection(_arg_strs(tx, "inputs")))
        if method == "issue_kp_certificate" or method in _CROSSING_METHODS:
            return _arg_str(tx, "cert_id") in certs
        if method in ("register_mine", "set_mine_accreditation"):
            return _arg_str(tx, "mine_id") in mines
        return False

    def _involved(
        self, relevant: list[_Entry], mines: set[str]
    ) -> set[tuple[str | None, str | None]]:
        """Sanction targets that can bear on the verdict: the mines, every
        organisation that acted or was named, and all their countries."""
        orgs: set[str] = set()
        countries: set[str] = set()
        for entry in relevant:
            tx = entry.tx
            orgs.add(entry.org.org_id)
            for name in ("to_org", "exporter", "importer", "operator"):
                named = _arg_str(tx, name)
                if named is not None:
                    orgs.add(named)
            for name in ("country", "origin_country", "destination_country"):
                country = _arg_str(tx, name)
                if country is not None:
                    countries.add(country)
        countries.update(self.orgs[org].country for org in orgs if org in self.orgs)
        return (
            {("mine", mine) for mine in mines}
            | {("org", org) for org in orgs}
            | {("country", country) for country in countries}
        )


# ------------------------------------------------------------------ replay and verdict


def _replay(
    asset_id: str,
    entries: list[_Entry],
    genesis: NetworkGenesis,
    validators: ValidatorSet,
    as_of: _Header,
    verify: Verifier,
) -> Verdict:
    state = MemoryState(genesis_state(genesis.genesis))
    for entry in entries:
        tx = entry.tx
        # The bundle holds only the sender's transactions in this provenance,
        # so its nonce count is set to the one each transaction carries; the
        # chain already enforced the nonce order.
        state.put(nonce_key(tx.sender), encode(tx.nonce))
        context = BlockContext(
            height=entry.height, time_ms=entry.header.proposer_time_ms, proposer=""
        )
        receipt = execute(state, tx, context, verify)
        if not receipt.ok:
            raise _missing(
                f"{entry.describe()} does not follow from the bundle's earlier transactions: "
                f"the ledger's rules refuse it ({receipt.error}: {receipt.message}); a transaction "
                "it depends on is missing from the bundle, or it was refused on chain"
            )
    compliance = _query(state, "compliance", asset_id)
    trace = _query(state, "trace", asset_id)
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
        for entry in entries
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
        checks=tuple(_checks(entries, genesis)),
    )


def _query(state: MemoryState, name: str, asset_id: str) -> dict[str, Any]:
    answer = query(state, "diamonds", name, {"asset_id": asset_id})
    if not answer["ok"]:
        raise _missing(f"the replayed bundle has no {name} of {asset_id}: {answer['message']}")
    result = answer["result"]
    assert isinstance(result, dict)
    return result


def _is_kp_authority(org: GenesisOrg, country: str | None) -> bool:
    return "certifier" in org.roles and "kp_authority" in org.scopes and org.country == country


def _checks(entries: list[_Entry], genesis: NetworkGenesis) -> list[Check]:
    """Every KP crossing and mine registration, judged from the transactions."""
    checks: list[Check] = []
    issued = {
        _arg_str(e.tx, "cert_id"): e
        for e in entries
        if e.tx.contract == "diamonds" and e.tx.method == "issue_kp_certificate"
    }
    for entry in entries:
        tx = entry.tx
        if tx.contract != "diamonds":
            continue
        if tx.method == "register_mine":
            country = _arg_str(tx, "country")
            registrar = entry.org
            if _is_kp_authority(registrar, country):
                ok, how = True, f"KP authority of {country}"
            elif "regulator" in registrar.roles:
                ok, how = True, "a regulator"
            else:
                ok, how = False, f"neither the KP authority of {country} nor a regulator"
            checks.append(
                Check(
                    "mine_registration",
                    _arg_str(tx, "mine_id") or "?",
                    ok,
                    f"in {country}, registered by {registrar.org_id} ({how}) at block {entry.height}",
                )
            )
        elif tx.method == "confirm_import":
            cert_id = _arg_str(tx, "cert_id")
            issue = issued[cert_id]
            origin = _arg_str(issue.tx, "origin_country")
            destination = _arg_str(issue.tx, "destination_country")
            issuer_ok = _is_kp_authority(issue.org, origin)
            confirmer_ok = _is_kp_authority(entry.org, destination)
            parcels = ", ".join(_arg_strs(issue.tx, "parcels"))
            checks.append(
                Check(
                    "kp_crossing",
                    cert_id or "?",
                    issuer_ok and confirmer_ok,
                    f"{parcels} {origin} -> {destination}: issued by {issue.org.org_id} "
                    f"({'KP authority of ' + str(origin) if issuer_ok else 'NOT the exporting authority'}) "
                    f"at block {issue.height}, import confirmed by {entry.org.org_id} "
                    f"({'KP authority of ' + str(destination) if confirmer_ok else 'NOT the importing authority'}) "
                    f"at block {entry.height}",
                )
            )
    return checks


# ------------------------------------------------------------------ text


def _carats(points: object) -> str:
    value = points if isinstance(points, int) else 0
    return f"{value // 100}.{value % 100:02d} ct"


def _outputs_text(value: object) -> str:
    if not isinstance(value, list):
        return "?"
    return ", ".join(
        f"{item.get('asset_id')} ({_carats(item.get('carats_points'))})"
        for item in value
        if isinstance(item, dict)
    )


_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "register_mine": lambda a: (
        f"mine {a.get('mine_id')} in {a.get('country')}, operated by {a.get('operator')}"
    ),
    "set_mine_accreditation": lambda a: (
        f"mine {a.get('mine_id')} accredited={a.get('accredited', True)}"
    ),
    "extract": lambda a: (
        f"{a.get('parcel_id')} {_carats(a.get('carats_points'))} from mine {a.get('mine_id')}"
    ),
    "split": lambda a: f"{a.get('asset_id')} -> {_outputs_text(a.get('outputs'))}",
    "merge": lambda a: f"{', '.join(map(str, a.get('inputs') or []))} -> {a.get('output_id')}",
    "cut": lambda a: f"{a.get('asset_id')} -> {_outputs_text(a.get('stones'))}",
    "transfer": lambda a: (
        f"{a.get('asset_id')} to {a.get('to_org')}"
        + (" (custody only)" if a.get("custody_only") else "")
    ),
    "issue_kp_certificate": lambda a: (
        f"KP {a.get('cert_id')} {a.get('origin_country')} -> {a.get('destination_country')}, "
        f"{a.get('exporter')} to {a.get('importer')}, {', '.join(map(str, a.get('parcels') or []))}, "
        f"{_carats(a.get('carats_points'))}, HS {a.get('hs_code')}"
    ),
    "ship": lambda a: f"shipped under {a.get('cert_id')}",
    "confirm_import": lambda a: (
        f"import under {a.get('cert_id')} confirmed, {_carats(a.get('carats_points'))}"
    ),
    "reject_import": lambda a: f"import under {a.get('cert_id')} rejected: {a.get('reason')}",
    "grade": lambda a: (
        f"{a.get('asset_id')} report {a.get('report_id')}: {a.get('colour')} {a.get('clarity')} "
        f"{a.get('cut_grade')}"
    ),
    "sell": lambda a: f"{a.get('asset_id')} sold to {a.get('buyer_ref')}",
    "sanction": lambda a: f"{a.get('kind')} {a.get('target')} sanctioned: {a.get('reason')}",
    "lift_sanction": lambda a: f"sanction on {a.get('kind')} {a.get('target')} lifted",
    "freeze": lambda a: f"{a.get('asset_id')} frozen",
    "unfreeze": lambda a: f"{a.get('asset_id')} unfrozen",
    "revoke_certificate": lambda a: (
        f"{a.get('kind')} certificate {a.get('cert_id')} revoked: {a.get('reason')}"
    ),
}


def _summarise(method: str, args: dict[str, Any]) -> str:
    describe = _SUMMARIES.get(method)
    if describe is not None:
        return describe(args)
    return " ".join(f"{key}={value}" for key, value in sorted(args.items()))

"""Checks of the self-certifying parts of PBFT, and the new-view computation.

Each ``*_problem`` function returns ``None`` when its object is valid and a
short reason otherwise; a replica drops and counts what fails, an auditor
prints the reason.  :func:`new_view_batches` is the one computation of the
set O of a NEW-VIEW: the new primary runs it to build the message and every
backup runs it again to check that the primary did not cheat.

:class:`CommitCertificate` is the one model of a block's commit
certificate wherever it travels, in two wire forms: its COMMITs' signed
wire bytes (:meth:`~CommitCertificate.to_wire`: the database, chain pages
and the chain stream) and maps of their fields
(:meth:`~CommitCertificate.to_fields`: the API, with bytes as hex in JSON,
and provenance bundles).  Each form has one decoder, which raises
:class:`~consensus.codec.ShapeError` for anything that is not a list of
COMMITs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.codec import (
    DIGEST_SIZE,
    SIGNATURE_SIZE,
    FieldReader,
    ShapeError,
    Verifier,
    hex_fields,
)
from consensus.messages import (
    Batch,
    CheckpointProof,
    Commit,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
    signature_valid,
)
from consensus.quorum import ValidatorSet
from consensus.wire import DEFAULT_WIRE_LIMITS, WireLimits, message_from_wire, message_to_wire

COMMIT_FIELDS = frozenset({"view", "height", "digest", "sender", "signature"})


class NotACommit(ShapeError):
    """A certificate in wire form holds an item that is not a COMMIT: the
    certificate is bad, whereas a certificate that is not a list, or an
    item that does not decode, is malformed framing."""


@dataclass(frozen=True)
class CommitCertificate:
    """The signed COMMIT votes that commit one block (checked by
    :func:`consensus.blocks.certificate_problem`)."""

    commits: tuple[Commit, ...]

    def to_wire(self) -> list[bytes]:
        """Each COMMIT as its signed wire bytes (msgpack: storage, chain pages)."""
        return [message_to_wire(commit) for commit in self.commits]

    @classmethod
    def from_wire(
        cls, value: object, limits: WireLimits = DEFAULT_WIRE_LIMITS, what: str = "certificate"
    ) -> CommitCertificate:
        """Read the wire form.  An item that does not decode raises the wire's
        :class:`~consensus.codec.DecodeError`; one that is not bytes, or is a
        message other than a COMMIT, raises :class:`NotACommit`."""
        if not isinstance(value, list):
            raise ShapeError(f"{what} is not a list")
        commits = []
        for item in value:
            message = message_from_wire(item, limits) if isinstance(item, bytes) else None
            if not isinstance(message, Commit):
                raise NotACommit(f"{what} holds something other than commits")
            commits.append(message)
        return cls(tuple(commits))

    def to_fields(self) -> list[dict[str, object]]:
        """Each COMMIT as a map of its fields (the API's and bundles' form)."""
        return [
            {
                "view": commit.view,
                "height": commit.height,
                "digest": commit.digest,
                "sender": commit.sender,
                "signature": commit.signature,
            }
            for commit in self.commits
        ]

    def to_json(self) -> list[dict[str, object]]:
        """The JSON form: :meth:`to_fields` with bytes as lowercase hex."""
        return [hex_fields(fields) for fields in self.to_fields()]

    @classmethod
    def from_fields(cls, value: object, what: str = "certificate") -> CommitCertificate:
        """Read the field-map form; :class:`~consensus.codec.ShapeError` if malformed."""
        return cls._read(value, what, hex_bytes=False)

    @classmethod
    def from_json(cls, value: object, what: str = "certificate") -> CommitCertificate:
        """Read the JSON form; :class:`~consensus.codec.ShapeError` if malformed."""
        return cls._read(value, what, hex_bytes=True)

    @classmethod
    def _read(cls, value: object, what: str, hex_bytes: bool) -> CommitCertificate:
        if not isinstance(value, list):
            raise ShapeError(f"{what} must be a list of commits")
        commits = []
        for n, item in enumerate(value):
            fields = FieldReader.of(item, COMMIT_FIELDS, f"{what}[{n}]", hex_bytes)
            commits.append(
                Commit(
                    view=fields.integer("view"),
                    height=fields.integer("height"),
                    digest=fields.blob("digest", (DIGEST_SIZE,)),
                    sender=fields.integer("sender"),
                    signature=fields.blob("signature", (SIGNATURE_SIZE,)),
                )
            )
        return cls(tuple(commits))


@dataclass(frozen=True)
class Checker:
    """The validator set, chain id and verifier that every check needs."""

    validators: ValidatorSet
    chain_id: str
    verify: Verifier

    def signed_by_sender(self, message: PrePrepare | ViewChange) -> bool:
        return self.validators.contains(message.sender) and signature_valid(
            message, self.validators.key_of(message.sender), self.chain_id, self.verify
        )


def checkpoint_proof_problem(proof: CheckpointProof, checker: Checker) -> str | None:
    if proof.height == 0:
        return None if not proof.checkpoints else "genesis checkpoint carries votes"
    signers: set[int] = set()
    for checkpoint in proof.checkpoints:
        if checkpoint.height != proof.height or checkpoint.results_root != proof.results_root:
            return "checkpoint votes disagree"
        if not checker.validators.contains(checkpoint.sender) or checkpoint.sender in signers:
            return "checkpoint signer unknown or repeated"
        key = checker.validators.key_of(checkpoint.sender)
        if not signature_valid(checkpoint, key, checker.chain_id, checker.verify):
            return f"bad checkpoint signature from {checkpoint.sender}"
        signers.add(checkpoint.sender)
    if len(signers) < checker.validators.quorum:
        return "checkpoint proof below quorum"
    return None


def prepared_certificate_problem(
    certificate: PreparedCertificate, before_view: int, checker: Checker
) -> str | None:
    pre_prepare = certificate.pre_prepare
    validators = checker.validators
    primary = validators.primary(pre_prepare.view)
    if pre_prepare.view >= before_view:
        return "prepared certificate from a view not before the new one"
    if pre_prepare.sender != primary or pre_prepare.batch.height != pre_prepare.height:
        return "prepared certificate's pre-prepare is malformed"
    if not all(request.well_formed() for request in pre_prepare.batch.requests):
        return "prepared batch has a request whose digest does not match"
    if not checker.signed_by_sender(pre_prepare):
        return "bad pre-prepare signature in prepared certificate"
    signers: set[int] = set()
    digest = pre_prepare.batch.digest
    for prepare in certificate.prepares:
        if (prepare.view, prepare.height, prepare.digest) != (
            pre_prepare.view,
            pre_prepare.height,
            digest,
        ):
            return "prepare does not match its pre-prepare"
        if not validators.contains(prepare.sender) or prepare.sender in signers:
            return "prepare signer unknown or repeated"
        if prepare.sender == primary:
            return "the primary's prepare does not count"
        key = validators.key_of(prepare.sender)
        if not signature_valid(prepare, key, checker.chain_id, checker.verify):
            return f"bad prepare signature from {prepare.sender}"
        signers.add(prepare.sender)
    if len(signers) < validators.quorum - 1:
        return "prepared certificate below quorum"
    return None


def view_change_problem(
    view_change: ViewChange,
    window_size: int,
    checker: Checker,
    at: Callable[[int], Checker] | None = None,
) -> str | None:
    """Why a VIEW-CHANGE is invalid, if it is.  ``checker`` holds the set its
    sender votes in; ``at(height)`` the set in force at a height, which
    signs the checkpoint proof (at its height) and the prepared certificates
    (at the window's first height) when the validator set changes
    (consensus.epochs); by default ``checker``'s set everywhere."""
    if not checker.signed_by_sender(view_change):
        return "bad view-change signature"
    low = view_change.stable.height
    stable_checker = checker if at is None else at(low)
    problem = checkpoint_proof_problem(view_change.stable, stable_checker)
    if problem is not None:
        return problem
    window_checker = checker if at is None else at(low + 1)
    heights: set[int] = set()
    for certificate in view_change.prepared:
        if not low < certificate.height <= low + window_size:
            return "prepared certificate outside the sender's window"
        if certificate.height in heights:
            return "two prepared certificates for one height"
        if at is not None and at(certificate.height).validators != window_checker.validators:
            return "prepared certificate past a change of validator set"
        heights.add(certificate.height)
        problem = prepared_certificate_problem(certificate, view_change.new_view, window_checker)
        if problem is not None:
            return problem
    return None


@dataclass(frozen=True)
class NewViewPlan:
    """What a NEW-VIEW must contain, computed from its VIEW-CHANGE messages."""

    stable: CheckpointProof
    batches: tuple[Batch, ...]


def highest_stable(view_changes: tuple[ViewChange, ...] | list[ViewChange]) -> CheckpointProof:
    """min-s of PBFT: the highest stable checkpoint any view change in V proves."""
    return max((vc.stable for vc in view_changes), key=lambda proof: proof.height)


def new_view_batches(view_changes: tuple[ViewChange, ...] | list[ViewChange]) -> NewViewPlan:
    """PBFT's O: for each height above the highest stable checkpoint in V, the
    batch of the prepared certificate with the highest view, or the null batch."""
    stable = highest_stable(view_changes)
    best: dict[int, PreparedCertificate] = {}
    for view_change in view_changes:
        for certificate in view_change.prepared:
            if certificate.height <= stable.height:
                continue
            known = best.get(certificate.height)
            # Ties in view cannot happen between honest quorums; the digest
            # order only makes the choice deterministic if they ever did.
            if known is None or (certificate.view, certificate.pre_prepare.batch.digest) > (
                known.view,
                known.pre_prepare.batch.digest,
            ):
                best[certificate.height] = certificate
    top = max(best, default=stable.height)
    batches = tuple(
        best[height].pre_prepare.batch if height in best else Batch.null(height)
        for height in range(stable.height + 1, top + 1)
    )
    return NewViewPlan(stable=stable, batches=batches)

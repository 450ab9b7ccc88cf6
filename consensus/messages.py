"""Consensus messages: typed, frozen, signed over canonical bytes.

Theory of operation
-------------------
Every message a validator sends is signed by it, except the two whose
content proves itself: a forwarded client request (the node checks the
transaction's own signature) and a state-transfer response (every block in
it carries a commit certificate the receiver verifies).  A signature covers
``signing_bytes(DOMAIN, chain_id, body())``: the domain tag names the kind
of message, so a PREPARE can never be replayed as a COMMIT, and the chain id
names the network.

A pre-prepare signs the *digest* of its batch, not the requests themselves;
a receiver recomputes the digest from the batch it got, so the batch is
bound all the same and a view change can carry pre-prepares cheaply.

Chain links are derived, not proposed: a
batch never names the previous block's hash: it covers its height, the
Merkle root of its request digests, the proposer's time and the latest
height the proposer had executed with that height's state root.  Every
replica derives the block header (and its previous-block hash) itself when
it delivers the block (see blocks.py), so filling a gap with a null batch
during a view change cannot break the chain.

Larger messages refer to the messages they carry by ``ident``: the digest of
a message's body and signature.  A view change signs the idents of its
checkpoint proof and prepared certificates; a new view signs the idents of
its view changes and pre-prepares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import ClassVar, TypeVar

from consensus.codec import Signer, Verifier, digest, digest_of, signing_bytes
from consensus.merkle import merkle_root

NULL_TIME_MS = 0


@dataclass(frozen=True)
class Request:
    """A client request: opaque bytes and their SHA-256 digest."""

    payload: bytes
    digest: bytes

    @classmethod
    def of(cls, payload: bytes) -> Request:
        return cls(payload=payload, digest=digest(payload))

    def well_formed(self) -> bool:
        return digest(self.payload) == self.digest


def batch_digest_of(
    height: int,
    proposer_time_ms: int,
    requests_root: bytes,
    request_count: int,
    executed_height: int,
    executed_results_root: bytes,
) -> bytes:
    """The digest votes are cast on.  Shared by Batch and BlockHeader."""
    return digest_of(
        {
            "height": height,
            "proposer_time_ms": proposer_time_ms,
            "requests_root": requests_root,
            "request_count": request_count,
            "executed_height": executed_height,
            "executed_results_root": executed_results_root,
        }
    )


@dataclass(frozen=True)
class Batch:
    """The requests a primary assigns to one height: the body of a block."""

    height: int
    requests: tuple[Request, ...]
    proposer_time_ms: int
    executed_height: int
    executed_results_root: bytes

    @classmethod
    def null(cls, height: int) -> Batch:
        """The empty batch a new view puts where no batch was prepared."""
        return cls(height, (), NULL_TIME_MS, 0, b"")

    @property
    def is_null(self) -> bool:
        return not self.requests and self.proposer_time_ms == NULL_TIME_MS

    @cached_property
    def requests_root(self) -> bytes:
        return merkle_root([request.digest for request in self.requests])

    @cached_property
    def digest(self) -> bytes:
        return batch_digest_of(
            self.height,
            self.proposer_time_ms,
            self.requests_root,
            len(self.requests),
            self.executed_height,
            self.executed_results_root,
        )


class Signed:
    """Mixin for signed messages: a domain tag, a body, a signature."""

    DOMAIN: ClassVar[str]
    sender: int
    signature: bytes

    def body(self) -> object:
        raise NotImplementedError

    def signed_bytes(self, chain_id: str) -> bytes:
        return signing_bytes(self.DOMAIN, chain_id, self.body())

    @cached_property
    def ident(self) -> bytes:
        """Digest of body and signature: how containers refer to this message."""
        return digest_of([self.DOMAIN, self.body(), self.signature])


@dataclass(frozen=True)
class PrePrepare(Signed):
    DOMAIN: ClassVar[str] = "pre-prepare"
    view: int
    height: int
    batch: Batch
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [self.view, self.height, self.batch.digest, self.sender]


@dataclass(frozen=True)
class Prepare(Signed):
    DOMAIN: ClassVar[str] = "prepare"
    view: int
    height: int
    digest: bytes
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [self.view, self.height, self.digest, self.sender]


@dataclass(frozen=True)
class Commit(Signed):
    DOMAIN: ClassVar[str] = "commit"
    view: int
    height: int
    digest: bytes
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [self.view, self.height, self.digest, self.sender]


@dataclass(frozen=True)
class Checkpoint(Signed):
    DOMAIN: ClassVar[str] = "checkpoint"
    height: int
    results_root: bytes
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [self.height, self.results_root, self.sender]


@dataclass(frozen=True)
class PreparedCertificate:
    """A pre-prepare and quorum - 1 matching prepares from distinct backups."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]

    @property
    def view(self) -> int:
        return self.pre_prepare.view

    @property
    def height(self) -> int:
        return self.pre_prepare.height

    @cached_property
    def ident(self) -> bytes:
        return digest_of([self.pre_prepare.ident, [p.ident for p in self.prepares]])


@dataclass(frozen=True)
class CheckpointProof:
    """Quorum matching signed checkpoints: a stable checkpoint.  Height 0 needs none."""

    height: int
    results_root: bytes
    checkpoints: tuple[Checkpoint, ...]

    @cached_property
    def ident(self) -> bytes:
        return digest_of([self.height, self.results_root, [c.ident for c in self.checkpoints]])


@dataclass(frozen=True)
class ViewChange(Signed):
    DOMAIN: ClassVar[str] = "view-change"
    new_view: int
    stable: CheckpointProof
    prepared: tuple[PreparedCertificate, ...]
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [
            self.new_view,
            self.stable.ident,
            [certificate.ident for certificate in self.prepared],
            self.sender,
        ]


@dataclass(frozen=True)
class NewView(Signed):
    DOMAIN: ClassVar[str] = "new-view"
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [
            self.view,
            [vc.ident for vc in self.view_changes],
            [pp.ident for pp in self.pre_prepares],
            self.sender,
        ]


@dataclass(frozen=True)
class Status(Signed):
    """A periodic heartbeat: lets a replica that missed traffic find its way back.

    ``suspect`` says the sender's request timer expired in ``view``: it
    suspects the primary but has promised nothing (see consensus.replica).
    """

    DOMAIN: ClassVar[str] = "status"
    view: int
    view_active: bool
    delivered_height: int
    stable_height: int
    sender: int
    signature: bytes = b""
    suspect: bool = False

    def body(self) -> object:
        return [
            self.view,
            self.view_active,
            self.delivered_height,
            self.stable_height,
            self.sender,
            self.suspect,
        ]


@dataclass(frozen=True)
class StateRequest(Signed):
    """Ask one peer for committed blocks from_height..to_height inclusive."""

    DOMAIN: ClassVar[str] = "state-request"
    from_height: int
    to_height: int
    sender: int
    signature: bytes = b""

    def body(self) -> object:
        return [self.from_height, self.to_height, self.sender]


@dataclass(frozen=True)
class CertifiedBatch:
    """A committed batch with its commit certificate: what state transfer moves."""

    batch: Batch
    certificate: tuple[Commit, ...]


@dataclass(frozen=True)
class StateResponse:
    """Committed batches, in height order.  Unsigned: each one proves itself."""

    blocks: tuple[CertifiedBatch, ...]
    sender: int


@dataclass(frozen=True)
class ForwardedRequest:
    """A client request a backup passes to the primary.  Unsigned: opaque bytes
    that the node checks on its own (transaction signature and format)."""

    request: Request
    sender: int


SignedMessage = (
    PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView | Status | StateRequest
)
Message = SignedMessage | StateResponse | ForwardedRequest

S = TypeVar("S", PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, Status, StateRequest)


def sign(message: S, signer: Signer, chain_id: str) -> S:
    """Return ``message`` with its signature filled in by ``signer``."""
    return replace(message, signature=signer.sign(message.signed_bytes(chain_id)))


def signature_valid(
    message: SignedMessage, public_key: bytes, chain_id: str, verify: Verifier
) -> bool:
    return verify(public_key, message.signed_bytes(chain_id), message.signature)

"""The wire and disk form of consensus messages and persisted records.

Theory of operation
-------------------
``message_to_wire`` turns any message into canonical codec bytes (a map with
a short type tag ``"t"``); ``message_from_wire`` turns bytes back into the
typed message or raises :class:`~consensus.codec.DecodeError`, and nothing
else, whatever the input.  Decoding is strict: canonical bytes only, every
field of the right type and size, no unknown or missing fields, and every
list under its :class:`WireLimits` bound, so a peer cannot make a replica
allocate more than a frame's worth.  Signatures are *not* checked here: that
is the replica's job, and the only one that knows the validator set.

:func:`frame_limits` sizes those bounds to a network's consensus
configuration: the largest frame an honest replica sends (a NEW-VIEW, see
:func:`honest_frame_bounds` for the arithmetic) with a margin, so decoding a
hostile frame costs at most about what decoding an honest one does.

A request travels as its payload alone; the decoder recomputes its digest,
so a frame can never carry a request whose digest does not match.

Records (what a replica persists) use the same encoders under the tag
``"r"``, so the node's storage and its network share one format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from consensus.codec import (
    DIGEST_SIZE,
    SIGNATURE_SIZE,
    DecodeError,
    Limits,
    decode,
    encode,
)
from consensus.config import ReplicaConfig
from consensus.events import (
    PreparedRecord,
    PrePrepareRecord,
    Record,
    StableCheckpointRecord,
    ViewRecord,
    VoteRecord,
)
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    Commit,
    ForwardedRequest,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    StateRequest,
    StateResponse,
    Status,
    ViewChange,
)

T = TypeVar("T")
Fields = dict[str, object]
MAX_INT = 2**63 - 1


# The replica's own records are read back with the default limits, except
# for their size: a persisted NEW-VIEW is as large as the largest frame.
RECORD_CODEC_LIMITS = Limits(max_size_bytes=64 * 1024 * 1024)


@dataclass(frozen=True)
class WireLimits:
    """Bounds on what one frame may hold.  Defaults suit up to 64 validators
    and the replica's own records; peer frames use :func:`frame_limits`."""

    codec: Limits = RECORD_CODEC_LIMITS
    max_validators: int = 64
    # The highest validator id a message may name.  Ids are never reused
    # (consensus.quorum), so a governed chain's ids outgrow its set size.
    max_validator_id: int = 63
    max_requests_per_batch: int = 4_096
    max_payload_bytes: int = 64 * 1024
    max_prepared_per_view_change: int = 1_024
    max_blocks_per_response: int = 256


DEFAULT_WIRE_LIMITS = WireLimits()
# On a chain whose validator set governance changes, ids are never reused, so
# the highest id grows with every validator ever added; an id is one integer,
# and membership (not this bound) decides whether its sender counts.
GOVERNED_MAX_VALIDATOR_ID = 2**32 - 1

# ---------------------------------------------------------------- sizing

# Upper bounds on the encoding of the parts of a frame (keys, tags, integers
# of up to 9 bytes, digests and signatures with their headers), checked
# against real encodings in tests/consensus/test_wire.py:
# a signed PREPARE, COMMIT or CHECKPOINT is about 170 bytes and 13 values
# (a map of 6: 1 + 6 keys + 6 values); a batch's fields other than its
# requests about 140 bytes; a request's bytes header at most 5 bytes.
_VOTE_BYTES = 256
_VOTE_VALUES = 13
_FIELDS_BYTES = 256
REQUEST_HEADER_BYTES = 5
# The deepest honest frame: NEW-VIEW > view_changes > VIEW-CHANGE > prepared
# > certificate > PRE-PREPARE > batch > requests > payload.
FRAME_MAX_DEPTH = 8
# The longest key or type tag ("executed_results_root").
FRAME_MAX_STR_LEN = 32
# Widest map in a frame (STATUS: 8 fields).
_MAX_FIELDS = 8
# Margin of every derived bound over the honest maximum, as a fraction (the
# observer's chain-page bounds use it too).
MARGIN_NUM, MARGIN_DEN = 3, 2


@dataclass(frozen=True)
class FrameBounds:
    """Bytes, values and containers of one frame (see ``codec.Limits``)."""

    size_bytes: int
    objects: int
    containers: int

    def __add__(self, other: FrameBounds) -> FrameBounds:
        return FrameBounds(
            self.size_bytes + other.size_bytes,
            self.objects + other.objects,
            self.containers + other.containers,
        )

    def __mul__(self, count: int) -> FrameBounds:
        return FrameBounds(self.size_bytes * count, self.objects * count, self.containers * count)


def _quorum_of(n: int) -> int:
    return (n + (n - 1) // 3) // 2 + 1


def honest_frame_bounds(
    config: ReplicaConfig, max_payload_bytes: int, max_validators: int = 0
) -> FrameBounds:
    """The largest frame an honest replica under ``config`` sends.

    With n validators (q of them a quorum), a window of W heights, batches
    of at most R requests and B payload bytes (or one request of at most P
    bytes, ``max_payload_bytes``), and state transfers of T blocks:

    * a batch is its fields, R request headers and at most max(B, P) bytes
      of payloads: 11 + R values, 2 containers;
    * a PRE-PREPARE is a signed vote's fields around a batch: 23 + R values;
    * a prepared certificate is a PRE-PREPARE and up to n PREPAREs
      (27 + R + 13n values); a checkpoint proof up to n CHECKPOINTs;
    * a VIEW-CHANGE carries a checkpoint proof and at most W prepared
      certificates (one per height of its window);
    * a NEW-VIEW carries q VIEW-CHANGEs and at most W PRE-PREPAREs: the
      largest message, about q * W * (B + n * 256) bytes;
    * a state response carries at most T committed batches, each with a
      certificate of at most n COMMITs.

    For the defaults of a node (n = 4, q = 3, W = 32, R = 512, B = 256 KiB,
    T = 16) a NEW-VIEW is at most 34 MB, 74,100 values and 1,000 containers,
    and a state response 4.3 MB and 9,300 values.

    ``max_validators`` sizes for a set that may grow to that many (a chain
    whose set governance changes); 0: the configured set.
    """
    n = max(config.validators.n, max_validators)
    quorum = _quorum_of(n)
    window = config.window_size
    requests = config.max_batch_size
    payload_bytes = max(config.max_batch_bytes, max_payload_bytes)
    vote = FrameBounds(_VOTE_BYTES, _VOTE_VALUES, 1)
    batch = FrameBounds(
        _FIELDS_BYTES + requests * REQUEST_HEADER_BYTES + payload_bytes, 11 + requests, 2
    )
    # A map of k fields adds 1 + 2k values around its fields' own contents.
    pre_prepare = batch + FrameBounds(_FIELDS_BYTES, 12, 1)
    certificate = pre_prepare + vote * n + FrameBounds(_FIELDS_BYTES, 4 + 1, 1 + 1)
    proof = vote * n + FrameBounds(_FIELDS_BYTES, 7, 2)
    view_change = certificate * window + proof + FrameBounds(_FIELDS_BYTES, 13, 2)
    new_view = view_change * quorum + pre_prepare * window + FrameBounds(_FIELDS_BYTES, 13, 3)
    block = batch + vote * n + FrameBounds(_FIELDS_BYTES, 5, 2)
    response = block * config.max_blocks_per_transfer + FrameBounds(_FIELDS_BYTES, 7, 2)
    return FrameBounds(
        max(new_view.size_bytes, response.size_bytes),
        max(new_view.objects, response.objects),
        max(new_view.containers, response.containers),
    )


def frame_limits(
    config: ReplicaConfig,
    max_frame_bytes: int,
    max_payload_bytes: int = WireLimits.max_payload_bytes,
    max_validators: int = 0,
    max_validator_id: int = 0,
) -> WireLimits:
    """Decoding bounds for peer frames under ``config``: the honest maxima of
    :func:`honest_frame_bounds` plus half again, and never more bytes than
    ``max_frame_bytes``; every list as long as the protocol lets it be.

    A chain whose validator set changes passes the largest set it may have
    (``max_validators``) and the highest id a validator may get
    (``max_validator_id``); 0: the configured set, ids 0..n-1."""
    honest = honest_frame_bounds(config, max_payload_bytes, max_validators)
    n = max(config.validators.n, max_validators)
    highest_id = max(config.validators.ids[-1], n - 1, max_validator_id)
    longest = max(
        config.max_batch_size, config.window_size, n, config.max_blocks_per_transfer, _MAX_FIELDS
    )
    codec = Limits(
        max_size_bytes=min(max_frame_bytes, honest.size_bytes * MARGIN_NUM // MARGIN_DEN),
        max_depth=FRAME_MAX_DEPTH,
        max_collection_len=longest,
        max_str_len=FRAME_MAX_STR_LEN,
        max_bytes_len=max(max_payload_bytes, SIGNATURE_SIZE),
        max_objects=honest.objects * MARGIN_NUM // MARGIN_DEN,
        max_containers=honest.containers * MARGIN_NUM // MARGIN_DEN,
    )
    return WireLimits(
        codec=codec,
        max_validators=n,
        max_validator_id=highest_id,
        max_requests_per_batch=config.max_batch_size,
        max_payload_bytes=max_payload_bytes,
        max_prepared_per_view_change=config.window_size,
        max_blocks_per_response=config.max_blocks_per_transfer,
    )


# ---------------------------------------------------------------- encoding


def _request(request: Request) -> bytes:
    return request.payload


def _batch(batch: Batch) -> Fields:
    return {
        "height": batch.height,
        "requests": [_request(r) for r in batch.requests],
        "proposer_time_ms": batch.proposer_time_ms,
        "executed_height": batch.executed_height,
        "executed_results_root": batch.executed_results_root,
    }


def _certificate(certificate: PreparedCertificate) -> Fields:
    return {
        "pre_prepare": _message(certificate.pre_prepare),
        "prepares": [_message(p) for p in certificate.prepares],
    }


def _proof(proof: CheckpointProof) -> Fields:
    return {
        "height": proof.height,
        "results_root": proof.results_root,
        "checkpoints": [_message(c) for c in proof.checkpoints],
    }


def _message(message: Message) -> Fields:
    match message:
        case PrePrepare():
            fields: Fields = {"t": "pp", "view": message.view, "height": message.height}
            fields["batch"] = _batch(message.batch)
        case Prepare() | Commit():
            fields = {"t": "p" if isinstance(message, Prepare) else "c"}
            fields |= {"view": message.view, "height": message.height, "digest": message.digest}
        case Checkpoint():
            fields = {"t": "cp", "height": message.height, "results_root": message.results_root}
        case ViewChange():
            fields = {"t": "vc", "new_view": message.new_view, "stable": _proof(message.stable)}
            fields["prepared"] = [_certificate(c) for c in message.prepared]
        case NewView():
            fields = {"t": "nv", "view": message.view}
            fields["view_changes"] = [_message(vc) for vc in message.view_changes]
            fields["pre_prepares"] = [_message(pp) for pp in message.pre_prepares]
        case Status():
            fields = {"t": "st", "view": message.view, "view_active": message.view_active}
            fields |= {
                "delivered_height": message.delivered_height,
                "stable_height": message.stable_height,
                "suspect": message.suspect,
            }
        case StateRequest():
            fields = {"t": "sq", "from_height": message.from_height, "to_height": message.to_height}
        case StateResponse():
            blocks = [
                {"batch": _batch(b.batch), "certificate": [_message(c) for c in b.certificate]}
                for b in message.blocks
            ]
            return {"t": "sr", "blocks": blocks, "sender": message.sender}
        case ForwardedRequest():
            return {"t": "fw", "request": _request(message.request), "sender": message.sender}
    fields["sender"] = message.sender
    fields["signature"] = message.signature
    return fields


def message_to_wire(message: Message) -> bytes:
    """Canonical bytes of ``message``."""
    return encode(_message(message))


def record_to_wire(record: Record) -> bytes:
    """Canonical bytes of a persisted record."""
    match record:
        case ViewRecord(view=view, active=active):
            fields: Fields = {"r": "view", "view": view, "active": active}
        case PrePrepareRecord(pre_prepare=pre_prepare):
            fields = {"r": "pre_prepare", "message": _message(pre_prepare)}
        case VoteRecord(vote=vote):
            fields = {"r": "vote", "message": _message(vote)}
        case PreparedRecord(certificate=certificate):
            fields = {"r": "prepared", "certificate": _certificate(certificate)}
        case StableCheckpointRecord(proof=proof):
            fields = {"r": "stable", "proof": _proof(proof)}
    return encode(fields)


# ---------------------------------------------------------------- decoding


class _Reader:
    """Typed access to one decoded map; every problem is a DecodeError."""

    def __init__(self, value: object, expected: set[str], limits: WireLimits) -> None:
        if not isinstance(value, dict):
            raise DecodeError("expected a map")
        if set(value) != expected:
            raise DecodeError(f"fields {sorted(value)} are not {sorted(expected)}")
        self.fields = value
        self.limits = limits

    def integer(self, name: str, upper: int = MAX_INT) -> int:
        value = self.fields[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
            raise DecodeError(f"{name} must be an integer in 0..{upper}")
        return value

    def flag(self, name: str) -> bool:
        value = self.fields[name]
        if not isinstance(value, bool):
            raise DecodeError(f"{name} must be a boolean")
        return value

    def blob(self, name: str, size: int | None = None, max_size: int | None = None) -> bytes:
        value = self.fields[name]
        if not isinstance(value, bytes):
            raise DecodeError(f"{name} must be bytes")
        if size is not None and len(value) != size:
            raise DecodeError(f"{name} must be {size} bytes")
        if max_size is not None and len(value) > max_size:
            raise DecodeError(f"{name} exceeds {max_size} bytes")
        return value

    def digest(self, name: str) -> bytes:
        """A digest or state root: 32 bytes, or empty where nothing was executed."""
        value = self.blob(name)
        if len(value) not in {0, DIGEST_SIZE}:
            raise DecodeError(f"{name} must be a 32-byte digest")
        return value

    def sender(self) -> int:
        return self.integer("sender", self.limits.max_validator_id)

    def signature(self) -> bytes:
        return self.blob("signature", SIGNATURE_SIZE)

    def items(self, name: str, limit: int, item: Callable[[object], T]) -> tuple[T, ...]:
        value = self.fields[name]
        if not isinstance(value, list):
            raise DecodeError(f"{name} must be a list")
        if len(value) > limit:
            raise DecodeError(f"{name} holds more than {limit} items")
        return tuple(item(element) for element in value)


_COMMON = {"t", "sender", "signature"}
_EXPECTED: dict[str, set[str]] = {
    "pp": _COMMON | {"view", "height", "batch"},
    "p": _COMMON | {"view", "height", "digest"},
    "c": _COMMON | {"view", "height", "digest"},
    "cp": _COMMON | {"height", "results_root"},
    "vc": _COMMON | {"new_view", "stable", "prepared"},
    "nv": _COMMON | {"view", "view_changes", "pre_prepares"},
    "st": _COMMON | {"view", "view_active", "delivered_height", "stable_height", "suspect"},
    "sq": _COMMON | {"from_height", "to_height"},
    "sr": {"t", "blocks", "sender"},
    "fw": {"t", "request", "sender"},
}


def _payload(value: object, limits: WireLimits) -> Request:
    if not isinstance(value, bytes) or len(value) > limits.max_payload_bytes:
        raise DecodeError("a request is a payload of bounded bytes")
    return Request.of(value)


def _read_batch(value: object, limits: WireLimits) -> Batch:
    fields = {"height", "requests", "proposer_time_ms", "executed_height", "executed_results_root"}
    reader = _Reader(value, fields, limits)
    return Batch(
        height=reader.integer("height"),
        requests=reader.items(
            "requests", limits.max_requests_per_batch, lambda v: _payload(v, limits)
        ),
        proposer_time_ms=reader.integer("proposer_time_ms"),
        executed_height=reader.integer("executed_height"),
        executed_results_root=reader.digest("executed_results_root"),
    )


def _typed(value: object, limits: WireLimits, kind: type[T]) -> T:
    message = _read_message(value, limits)
    if not isinstance(message, kind):
        raise DecodeError(f"expected a {kind.__name__}")
    return message


def _read_proof(value: object, limits: WireLimits) -> CheckpointProof:
    reader = _Reader(value, {"height", "results_root", "checkpoints"}, limits)
    return CheckpointProof(
        reader.integer("height"),
        reader.digest("results_root"),
        reader.items("checkpoints", limits.max_validators, lambda v: _typed(v, limits, Checkpoint)),
    )


def _read_certificate(value: object, limits: WireLimits) -> PreparedCertificate:
    reader = _Reader(value, {"pre_prepare", "prepares"}, limits)
    return PreparedCertificate(
        _typed(reader.fields["pre_prepare"], limits, PrePrepare),
        reader.items("prepares", limits.max_validators, lambda v: _typed(v, limits, Prepare)),
    )


def _read_certified(value: object, limits: WireLimits) -> CertifiedBatch:
    reader = _Reader(value, {"batch", "certificate"}, limits)
    return CertifiedBatch(
        _read_batch(reader.fields["batch"], limits),
        reader.items("certificate", limits.max_validators, lambda v: _typed(v, limits, Commit)),
    )


def _read_message(value: object, limits: WireLimits) -> Message:
    tag = value.get("t") if isinstance(value, dict) else None
    if not isinstance(tag, str) or tag not in _EXPECTED:
        raise DecodeError("unknown message type")
    reader = _Reader(value, _EXPECTED[tag], limits)
    match tag:
        case "pp":
            batch = _read_batch(reader.fields["batch"], limits)
            return PrePrepare(
                reader.integer("view"),
                reader.integer("height"),
                batch,
                reader.sender(),
                reader.signature(),
            )
        case "p":
            return Prepare(
                reader.integer("view"),
                reader.integer("height"),
                reader.blob("digest", DIGEST_SIZE),
                reader.sender(),
                reader.signature(),
            )
        case "c":
            return Commit(
                reader.integer("view"),
                reader.integer("height"),
                reader.blob("digest", DIGEST_SIZE),
                reader.sender(),
                reader.signature(),
            )
        case "cp":
            return Checkpoint(
                reader.integer("height"),
                reader.digest("results_root"),
                reader.sender(),
                reader.signature(),
            )
        case "vc":
            stable = _read_proof(reader.fields["stable"], limits)
            prepared = reader.items(
                "prepared",
                limits.max_prepared_per_view_change,
                lambda v: _read_certificate(v, limits),
            )
            return ViewChange(
                reader.integer("new_view"), stable, prepared, reader.sender(), reader.signature()
            )
        case "nv":
            view_changes = reader.items(
                "view_changes", limits.max_validators, lambda v: _typed(v, limits, ViewChange)
            )
            pre_prepares = reader.items(
                "pre_prepares",
                limits.max_prepared_per_view_change,
                lambda v: _typed(v, limits, PrePrepare),
            )
            return NewView(
                reader.integer("view"),
                view_changes,
                pre_prepares,
                reader.sender(),
                reader.signature(),
            )
        case "st":
            return Status(
                reader.integer("view"),
                reader.flag("view_active"),
                reader.integer("delivered_height"),
                reader.integer("stable_height"),
                reader.sender(),
                reader.signature(),
                suspect=reader.flag("suspect"),
            )
        case "sq":
            return StateRequest(
                reader.integer("from_height"),
                reader.integer("to_height"),
                reader.sender(),
                reader.signature(),
            )
        case "sr":
            blocks = reader.items(
                "blocks", limits.max_blocks_per_response, lambda v: _read_certified(v, limits)
            )
            return StateResponse(blocks, reader.sender())
        case _:
            return ForwardedRequest(_payload(reader.fields["request"], limits), reader.sender())


def message_from_wire(data: bytes, limits: WireLimits = DEFAULT_WIRE_LIMITS) -> Message:
    """The message in ``data``; :class:`DecodeError` for anything malformed."""
    return _read_message(decode(data, limits.codec), limits)


def record_from_wire(data: bytes, limits: WireLimits = DEFAULT_WIRE_LIMITS) -> Record:
    """The persisted record in ``data``; :class:`DecodeError` if it is corrupt."""
    value = decode(data, limits.codec)
    tag = value.get("r") if isinstance(value, dict) else None
    match tag:
        case "view":
            reader = _Reader(value, {"r", "view", "active"}, limits)
            return ViewRecord(reader.integer("view"), reader.flag("active"))
        case "pre_prepare":
            reader = _Reader(value, {"r", "message"}, limits)
            return PrePrepareRecord(_typed(reader.fields["message"], limits, PrePrepare))
        case "vote":
            reader = _Reader(value, {"r", "message"}, limits)
            vote = _read_message(reader.fields["message"], limits)
            if not isinstance(vote, Prepare | Commit | Checkpoint | ViewChange | NewView):
                raise DecodeError("a vote record holds a vote")
            return VoteRecord(vote)
        case "prepared":
            reader = _Reader(value, {"r", "certificate"}, limits)
            return PreparedRecord(_read_certificate(reader.fields["certificate"], limits))
        case "stable":
            reader = _Reader(value, {"r", "proof"}, limits)
            return StableCheckpointRecord(_read_proof(reader.fields["proof"], limits))
    raise DecodeError("unknown record type")

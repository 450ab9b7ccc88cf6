"""Wire and disk form of consensus messages: exact round trips, strict decoding."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, decode, encode
from consensus.events import (
    PreparedRecord,
    PrePrepareRecord,
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
from consensus.wire import (
    WireLimits,
    message_from_wire,
    message_to_wire,
    record_from_wire,
    record_to_wire,
)

small = st.integers(min_value=0, max_value=2**40)
sender = st.integers(min_value=0, max_value=63)
digests = st.binary(min_size=32, max_size=32)
roots = st.one_of(st.just(b""), digests)
signatures = st.binary(min_size=64, max_size=64)
requests = st.builds(Request.of, st.binary(max_size=64))
batches = st.builds(Batch, small, st.lists(requests, max_size=5).map(tuple), small, small, roots)
pre_prepares = st.builds(PrePrepare, small, small, batches, sender, signatures)
prepares = st.builds(Prepare, small, small, digests, sender, signatures)
commits = st.builds(Commit, small, small, digests, sender, signatures)
checkpoints = st.builds(Checkpoint, small, roots, sender, signatures)
certificates = st.builds(
    PreparedCertificate, pre_prepares, st.lists(prepares, max_size=4).map(tuple)
)
proofs = st.builds(CheckpointProof, small, roots, st.lists(checkpoints, max_size=4).map(tuple))
view_changes = st.builds(
    ViewChange, small, proofs, st.lists(certificates, max_size=3).map(tuple), sender, signatures
)
messages: st.SearchStrategy[Message] = st.one_of(
    pre_prepares,
    prepares,
    commits,
    checkpoints,
    view_changes,
    st.builds(
        NewView,
        small,
        st.lists(view_changes, max_size=3).map(tuple),
        st.lists(pre_prepares, max_size=3).map(tuple),
        sender,
        signatures,
    ),
    st.builds(Status, small, st.booleans(), small, small, sender, signatures),
    st.builds(StateRequest, small, small, sender, signatures),
    st.builds(
        StateResponse,
        st.lists(
            st.builds(CertifiedBatch, batches, st.lists(commits, max_size=4).map(tuple)), max_size=3
        ).map(tuple),
        sender,
    ),
    st.builds(ForwardedRequest, requests, sender),
)
records = st.one_of(
    st.builds(ViewRecord, small, st.booleans()),
    st.builds(PrePrepareRecord, pre_prepares),
    st.builds(VoteRecord, st.one_of(prepares, commits, checkpoints, view_changes)),
    st.builds(PreparedRecord, certificates),
    st.builds(StableCheckpointRecord, proofs),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips_exactly(message: Message) -> None:
    data = message_to_wire(message)
    assert message_from_wire(data) == message
    assert message_to_wire(message_from_wire(data)) == data


@settings(max_examples=200, deadline=None)
@given(records)
def test_every_record_round_trips_exactly(record: object) -> None:
    assert record_from_wire(record_to_wire(record)) == record  # type: ignore[arg-type]


@settings(max_examples=1_000, deadline=None)
@given(st.binary(max_size=300))
def test_only_decode_error_escapes_for_arbitrary_bytes(data: bytes) -> None:
    for reader in (message_from_wire, record_from_wire):
        with contextlib.suppress(DecodeError):
            reader(data)


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_a_mutated_frame_decodes_to_a_message_or_raises_decode_error(
    message: Message, data: st.DataObject
) -> None:
    frame = bytearray(message_to_wire(message))
    position = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    frame[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        decoded = message_from_wire(bytes(frame))
    except DecodeError:
        return
    assert message_to_wire(decoded) == bytes(frame)


def _tampered(message: Message, **changes: object) -> bytes:
    fields = decode(message_to_wire(message))
    assert isinstance(fields, dict)
    fields.update(changes)
    return encode(fields)


PREPARE = Prepare(1, 2, b"d" * 32, 3, b"s" * 64)


@pytest.mark.parametrize(
    ("label", "changes"),
    [
        ("unknown type", {"t": "zz"}),
        ("short digest", {"digest": b"d" * 31}),
        ("short signature", {"signature": b"s" * 63}),
        ("negative view", {"view": -1}),
        ("boolean height", {"height": True}),
        ("text digest", {"digest": "d" * 32}),
        ("sender beyond the limit", {"sender": 64}),
        ("extra field", {"extra": 1}),
    ],
)
def test_malformed_fields_are_decode_errors(label: str, changes: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        message_from_wire(_tampered(PREPARE, **changes))


def test_a_missing_field_is_a_decode_error() -> None:
    fields = decode(message_to_wire(PREPARE))
    assert isinstance(fields, dict)
    del fields["digest"]
    with pytest.raises(DecodeError):
        message_from_wire(encode(fields))


def test_list_limits_bound_what_a_frame_can_hold() -> None:
    batch = Batch(1, tuple(Request.of(bytes([i])) for i in range(5)), 1, 0, b"")
    frame = message_to_wire(PrePrepare(0, 1, batch, 0, b"s" * 64))
    with pytest.raises(DecodeError):
        message_from_wire(frame, WireLimits(max_requests_per_batch=4))
    with pytest.raises(DecodeError):
        message_from_wire(
            message_to_wire(ForwardedRequest(Request.of(b"x" * 10), 1)),
            WireLimits(max_payload_bytes=9),
        )
    assert message_from_wire(frame, WireLimits(max_requests_per_batch=5)).batch == batch  # type: ignore[union-attr]


def test_a_request_digest_is_recomputed_not_trusted() -> None:
    forged = replace(Request.of(b"payload"), digest=b"x" * 32)
    decoded = message_from_wire(message_to_wire(ForwardedRequest(forged, 1)))
    assert isinstance(decoded, ForwardedRequest)
    assert decoded.request == Request.of(b"payload")


def test_a_vote_record_must_hold_a_vote() -> None:
    fields = {"r": "vote", "message": decode(message_to_wire(StateRequest(1, 2, 0, b"s" * 64)))}
    with pytest.raises(DecodeError):
        record_from_wire(encode(fields))

"""Wire and disk form of consensus messages: exact round trips, strict decoding."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, decode, encode
from consensus.config import ReplicaConfig
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
from consensus.quorum import ValidatorSet
from consensus.wire import (
    FRAME_MAX_DEPTH,
    WireLimits,
    frame_limits,
    honest_frame_bounds,
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
    st.builds(Status, small, st.booleans(), small, small, sender, signatures, st.booleans()),
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


# ------------------------------------------------------------ frame limits

BIG = 2**63 - 1  # the longest integers, so every field takes its most bytes


def _validators(count: int) -> ValidatorSet:
    return ValidatorSet(tuple(bytes([index + 1]) * 32 for index in range(count)))


def _config(validators: int) -> ReplicaConfig:
    return ReplicaConfig(
        chain_id="wire-test",
        validators=_validators(validators),
        replica_id=0,
        checkpoint_interval=2,
        window_size=4,
        max_batch_size=8,
        max_batch_bytes=4_096,
        max_blocks_per_transfer=3,
    )


def _full_batch(config: ReplicaConfig, height: int) -> Batch:
    """A batch as large as the config allows: R requests, B payload bytes."""
    size = config.max_batch_bytes // config.max_batch_size
    requests = tuple(
        Request.of(bytes([height % 256, index]) + b"\x00" * (size - 2))
        for index in range(config.max_batch_size)
    )
    return Batch(height, requests, BIG, BIG, b"\x01" * 32)


def _largest_new_view(config: ReplicaConfig) -> NewView:
    """A quorum of view changes, each with a full window of prepared
    certificates (every validator's PREPARE in each), and a full window of
    re-proposals: more than any honest primary sends."""
    n, window, signature = config.validators.n, config.window_size, b"\x02" * 64

    def pre_prepare(height: int) -> PrePrepare:
        return PrePrepare(BIG, height, _full_batch(config, height), n - 1, signature)

    def certificate(height: int) -> PreparedCertificate:
        prepares = tuple(Prepare(BIG, height, b"\x03" * 32, s, signature) for s in range(n))
        return PreparedCertificate(pre_prepare(height), prepares)

    checkpoints = tuple(Checkpoint(BIG, b"\x04" * 32, s, signature) for s in range(n))
    stable = CheckpointProof(BIG, b"\x04" * 32, checkpoints)
    view_changes = tuple(
        ViewChange(BIG, stable, tuple(certificate(h) for h in range(window)), s, signature)
        for s in range(config.validators.quorum)
    )
    return NewView(
        BIG, view_changes, tuple(pre_prepare(h) for h in range(window)), n - 1, signature
    )


def _largest_state_response(config: ReplicaConfig) -> StateResponse:
    commits = tuple(
        Commit(BIG, BIG, b"\x05" * 32, s, b"\x02" * 64) for s in range(config.validators.n)
    )
    blocks = tuple(
        CertifiedBatch(_full_batch(config, height), commits)
        for height in range(config.max_blocks_per_transfer)
    )
    return StateResponse(blocks, config.validators.n - 1)


def _counts(value: object) -> tuple[int, int, int]:
    """Values, containers and depth of a decoded value, as codec.Limits counts them."""
    values = containers = deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        values += 1
        deepest = max(deepest, depth)
        if isinstance(item, list):
            containers += 1
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            containers += 1
            values += len(item)
            stack.extend((child, depth + 1) for child in item.values())
    return values, containers, deepest


@pytest.mark.parametrize("validators", [1, 4, 7])
@pytest.mark.parametrize("build", [_largest_new_view, _largest_state_response])
def test_the_largest_honest_frames_fit_the_bounds_and_decode(
    validators: int, build: Callable[[ReplicaConfig], Message]
) -> None:
    config = _config(validators)
    message = build(config)
    frame = message_to_wire(message)
    honest = honest_frame_bounds(config, max_payload_bytes=1_024)
    values, containers, depth = _counts(decode(frame))
    assert len(frame) <= honest.size_bytes
    assert values <= honest.objects
    assert containers <= honest.containers
    assert depth <= FRAME_MAX_DEPTH
    assert message_from_wire(frame, frame_limits(config, 64 << 20, 1_024)) == message


def _node_config() -> ReplicaConfig:
    """A validator's configuration as a node runs it by default (node/runtime/config.py)."""
    return ReplicaConfig(
        "wire-test",
        _validators(4),
        0,
        max_batch_size=512,
        batch_timeout_ms=2,
        max_blocks_per_transfer=16,
    )


def test_the_frame_bounds_of_a_default_node_are_as_documented() -> None:
    config = _node_config()
    honest = honest_frame_bounds(config, 64 * 1024)
    assert 33_000_000 < honest.size_bytes < 35_000_000
    assert 74_000 < honest.objects < 74_300
    assert honest.containers < 1_000
    limits = frame_limits(config, 64 << 20).codec
    assert limits.max_size_bytes == honest.size_bytes * 3 // 2 < 64 << 20


def test_a_frame_dense_in_values_is_refused_by_count_not_by_size() -> None:
    limits = frame_limits(_node_config(), 64 << 20)
    # 300 lists of 512 zeros: 153,901 values in 155 KB, far inside the bytes.
    inner = b"\xdc\x02\x00" + b"\x00" * 512
    frame = b"\xdc\x01\x2c" + inner * 300
    assert len(frame) < limits.codec.max_size_bytes // 100
    with pytest.raises(DecodeError, match="max_objects"):
        message_from_wire(frame, limits)


def test_a_persisted_new_view_larger_than_a_default_decode_reads_back() -> None:
    """A replica persists every NEW-VIEW it sends or accepts and reads its
    records back at start: one as large as a frame must decode."""
    payload = b"\x07" * 65_000
    requests = tuple(Request.of(payload + i.to_bytes(2, "big")) for i in range(300))
    batch = Batch(1, requests, 1, 0, b"")
    record = PrePrepareRecord(PrePrepare(0, 1, batch, 0, b"\x02" * 64))
    data = record_to_wire(record)
    assert len(data) > 16 * 1024 * 1024
    assert record_from_wire(data) == record


def test_a_governed_chain_sizes_frames_for_its_largest_set_and_any_validator_id() -> None:
    """A set that grows by governance needs frames for more validators than
    it started with, and ids never reused go past n - 1."""
    config = _config(4)
    fixed = frame_limits(config, 1 << 30)
    governed = frame_limits(config, 1 << 30, max_validators=64, max_validator_id=2**32 - 1)
    assert fixed.max_validators == 4 and governed.max_validators == 64
    assert governed.codec.max_objects > fixed.codec.max_objects
    assert (
        honest_frame_bounds(config, 4_096, 64).objects > honest_frame_bounds(config, 4_096).objects
    )
    joined = message_to_wire(Prepare(1, 2, b"d" * 32, 70, b"s" * 64))
    with pytest.raises(DecodeError):
        message_from_wire(joined, fixed)
    assert message_from_wire(joined, governed).sender == 70

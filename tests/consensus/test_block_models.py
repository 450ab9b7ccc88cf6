"""The block header and commit certificate models: every wire form reads back
to the same value, the forms agree on the block digest, and a malformed value
is a ShapeError naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocks import BlockHeader, SignedHeader, derive_header
from consensus.codec import (
    DIGEST_SIZE,
    SIGNATURE_SIZE,
    DecodeError,
    ShapeError,
    decode,
    digest_of,
    encode,
)
from consensus.messages import Batch, Commit, Prepare, Request
from consensus.proofs import CommitCertificate, NotACommit
from consensus.wire import DEFAULT_WIRE_LIMITS, message_to_wire

EXAMPLES = settings(max_examples=40, deadline=None)
INTS = st.integers(min_value=0, max_value=2**63 - 1)
DIGESTS = st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE)

headers = st.builds(
    BlockHeader,
    chain_id=st.text(max_size=20),
    height=INTS,
    prev_block_hash=DIGESTS,
    time_ms=INTS,
    proposer_time_ms=INTS,
    requests_root=DIGESTS,
    request_count=INTS,
    executed_height=INTS,
    # A null batch (a view change's filler) carries an empty state root.
    executed_results_root=st.one_of(st.just(b""), DIGESTS),
)
commits = st.builds(
    Commit,
    view=INTS,
    height=INTS,
    digest=DIGESTS,
    sender=st.integers(min_value=0, max_value=DEFAULT_WIRE_LIMITS.max_validators - 1),
    signature=st.binary(min_size=SIGNATURE_SIZE, max_size=SIGNATURE_SIZE),
)
certificates = st.lists(commits, max_size=7).map(lambda items: CommitCertificate(tuple(items)))


@EXAMPLES
@given(headers)
def test_a_header_reads_back_from_each_wire_form(header: BlockHeader) -> None:
    # Through the codec (msgpack) and through real JSON text, as they travel.
    assert BlockHeader.from_dict(decode(encode(header.to_dict()))) == header
    assert BlockHeader.from_json(json.loads(json.dumps(header.to_json()))) == header
    assert SignedHeader.from_dict(decode(encode(header.signed.to_dict()))) == header.signed


@EXAMPLES
@given(headers)
def test_the_json_and_msgpack_forms_of_a_header_give_the_same_digests(header: BlockHeader) -> None:
    from_msgpack = BlockHeader.from_dict(decode(encode(header.to_dict())))
    from_json = BlockHeader.from_json(json.loads(json.dumps(header.to_json())))
    assert from_msgpack.hash == from_json.hash == header.hash == digest_of(header.to_dict())
    assert from_msgpack.batch_digest == from_json.batch_digest == header.signed.batch_digest


def test_a_header_has_the_batch_digest_its_batch_was_voted_on() -> None:
    batch = Batch(5, (Request.of(b"tx-1"), Request.of(b"tx-2")), 1_000, 4, b"r" * 32)
    header = derive_header("provenet-test", batch, b"p" * 32, 900)
    assert header.batch_digest == header.signed.batch_digest == batch.digest


@EXAMPLES
@given(certificates)
def test_a_certificate_reads_back_from_each_wire_form(certificate: CommitCertificate) -> None:
    assert CommitCertificate.from_wire(decode(encode(certificate.to_wire()))) == certificate
    assert CommitCertificate.from_fields(decode(encode(certificate.to_fields()))) == certificate
    assert CommitCertificate.from_json(json.loads(json.dumps(certificate.to_json()))) == certificate


def _header_json() -> dict[str, Any]:
    batch = Batch(5, (Request.of(b"tx"),), 1_000, 4, b"r" * 32)
    return derive_header("c", batch, b"p" * 32, 900).to_json()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"height": -1}, "header.height"),
        ({"height": True}, "header.height"),
        ({"height": 2**63}, "header.height"),
        ({"time_ms": "1"}, "header.time_ms"),
        ({"chain_id": 7}, "header.chain_id"),
        ({"requests_root": "zz"}, "header.requests_root"),
        ({"prev_block_hash": "00" * 31}, "header.prev_block_hash"),
        ({"executed_results_root": "00" * 16}, "header.executed_results_root"),
        ({"extra": 1}, "unknown ['extra']"),
    ],
)
def test_a_malformed_header_is_a_shape_error_naming_the_field(
    change: dict[str, object], named: str
) -> None:
    with pytest.raises(ShapeError, match=named.replace("[", r"\[").replace("]", r"\]")):
        BlockHeader.from_json({**_header_json(), **change})


def test_a_header_missing_a_field_or_not_a_map_is_a_shape_error() -> None:
    data = _header_json()
    del data["time_ms"]
    with pytest.raises(ShapeError, match="missing \\['time_ms'\\]"):
        BlockHeader.from_json(data)
    value: object
    for value in (None, [], "header", b""):
        with pytest.raises(ShapeError, match="not a map"):
            BlockHeader.from_dict(value)
    # The msgpack form carries bytes, never hex.
    with pytest.raises(ShapeError, match="prev_block_hash"):
        BlockHeader.from_dict(_header_json())


def test_a_malformed_certificate_is_a_shape_error() -> None:
    commit = Commit(0, 1, b"d" * 32, 2, b"s" * 64)
    fields = CommitCertificate((commit,)).to_fields()
    bad: object
    for bad in (None, {}, [None], [{**fields[0], "signature": b"s"}], [{**fields[0], "x": 1}]):
        with pytest.raises(ShapeError):
            CommitCertificate.from_fields(bad)
    with pytest.raises(ShapeError):
        CommitCertificate.from_json(fields)  # bytes where hex is due
    for bad_wire in (None, [None], ["commit"]):
        with pytest.raises(ShapeError):
            CommitCertificate.from_wire(bad_wire)


def test_a_wire_certificate_holding_another_message_is_not_a_commit() -> None:
    prepare = message_to_wire(Prepare(0, 1, b"d" * 32, 2, b"s" * 64))
    with pytest.raises(NotACommit):
        CommitCertificate.from_wire([prepare])
    # Bytes that do not decode stay the wire decoder's error, not a shape error.
    with pytest.raises(DecodeError) as caught:
        CommitCertificate.from_wire([b"\xc1"])
    assert not isinstance(caught.value, ShapeError)

"""A receipt's stored form reads back to the same receipt, with the same digest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import ShapeError, decode, encode
from contracts.errors import ErrorCode
from contracts.receipt import STATUS_OK, STATUS_REJECTED, Event, Receipt

attributes = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.integers(min_value=0, max_value=2**63 - 1), st.text(max_size=8), st.binary()),
    max_size=4,
)
events = st.builds(
    Event, contract=st.text(max_size=8), kind=st.text(max_size=8), attributes=attributes
)
receipts = st.builds(
    Receipt,
    tx_id=st.binary(min_size=32, max_size=32),
    status=st.sampled_from([STATUS_OK, STATUS_REJECTED]),
    error=st.one_of(st.none(), st.sampled_from(list(ErrorCode))),
    message=st.text(max_size=20),
    events=st.lists(events, max_size=3).map(tuple),
    writes=st.integers(min_value=0, max_value=2**63 - 1),
)


@settings(max_examples=40, deadline=None)
@given(receipts)
def test_a_receipt_reads_back_from_its_stored_form(receipt: Receipt) -> None:
    back = Receipt.from_dict(decode(encode(receipt.to_dict())))
    assert back == receipt
    assert back.leaf() == receipt.leaf()


def test_a_malformed_receipt_is_a_shape_error() -> None:
    good = Receipt(b"t" * 32, STATUS_REJECTED, ErrorCode.NOT_OWNER, "no").to_dict()
    for change in (
        {"error": "not_a_code"},
        {"tx_id": b"short"},
        {"writes": -1},
        {"events": [{"contract": "c", "kind": "k"}]},
        {"events": [{"contract": "c", "kind": "k", "attributes": []}]},
    ):
        with pytest.raises(ShapeError):
            Receipt.from_dict({**good, **change})
    with pytest.raises(ShapeError):
        Receipt.from_dict({key: value for key, value in good.items() if key != "message"})

"""Typed records in state: frozen dataclasses stored as canonical maps.

Theory of operation
-------------------
Every record a contract keeps (an organisation, an asset, a certificate...)
is a frozen dataclass whose fields are codec scalars or tuples of them.  It
is stored as the canonical encoding of a map from field name to value, so
equal records are equal bytes on every node and enter the state root the
same way.  Records are only ever written by contract code, so a record that
fails to decode is a broken invariant (an assert), not bad input.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar, Protocol, TypeVar

from consensus.codec import decode, encode
from contracts.errors import ErrorCode, Rejected


class _Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class _Writer(Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...


class _Record(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


R = TypeVar("R", bound=_Record)


# Decoding is a pure function of the bytes and records are immutable, so a
# memo from (type, bytes) to record changes no answer; it only spares the
# decoder's canonical re-encoding for records read soon after they were
# written or read, which is most reads.  It is bounded and simply emptied
# when full.
_MEMO_ENTRIES = 8192
_memo: dict[tuple[type, bytes], object] = {}


def _remember(cls: type, raw: bytes, record: object) -> None:
    if len(_memo) >= _MEMO_ENTRIES:
        _memo.clear()
    _memo[(cls, raw)] = record


def record_to_bytes(record: _Record) -> bytes:
    value: dict[str, object] = {}
    for item in fields(record):
        field_value = getattr(record, item.name)
        value[item.name] = list(field_value) if isinstance(field_value, tuple) else field_value
    raw = encode(value)
    _remember(type(record), raw, record)
    return raw


def record_from_bytes(cls: type[R], raw: bytes) -> R:
    known = _memo.get((cls, raw))
    if known is not None:
        assert isinstance(known, cls)
        return known
    value = decode(raw)
    assert isinstance(value, dict), f"{cls.__name__} record is a map"
    converted: dict[str, Any] = {
        key: tuple(item) if isinstance(item, list) else item for key, item in value.items()
    }
    record = cls(**converted)
    _remember(cls, raw, record)
    return record


def load(store: _Reader, key: bytes, cls: type[R]) -> R | None:
    raw = store.get(key)
    return None if raw is None else record_from_bytes(cls, raw)


def load_or_reject(store: _Reader, key: bytes, cls: type[R], code: ErrorCode, message: str) -> R:
    """The record at ``key``, or the transaction is rejected with ``code``."""
    record = load(store, key, cls)
    if record is None:
        raise Rejected(code, message)
    return record


def save(store: _Writer, key: bytes, record: _Record) -> None:
    store.put(key, record_to_bytes(record))


def load_int(store: _Reader, key: bytes) -> int:
    """An integer counter; absent means zero."""
    raw = store.get(key)
    if raw is None:
        return 0
    value = decode(raw)
    assert isinstance(value, int) and not isinstance(value, bool), "counter is an int"
    return value

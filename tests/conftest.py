"""Fixtures shared by the test packages."""

from __future__ import annotations

import msgpack
import pytest


@pytest.fixture
def unpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the inputs msgpack is asked to build a value from.

    A decoder that refuses an input by its headers alone leaves this empty:
    the tests of the codec's count limits use it to show nothing was built.
    """
    calls: list[int] = []
    real = msgpack.unpackb

    def counting(data: bytes, **options: object) -> object:
        calls.append(len(data))
        return real(data, **options)

    monkeypatch.setattr(msgpack, "unpackb", counting)
    return calls

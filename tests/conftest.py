"""Fixtures shared by the test packages.

The helper modules of each test directory (``helpers``, ``contracts_testkit``,
``netfixture``, ``flood``, ``fuzzkit``) are imported by their plain names:
pytest's ``pythonpath`` in pyproject.toml puts their directories on the path,
and mypy's ``mypy_path`` names the same directories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgpack
import pytest

if TYPE_CHECKING:
    from fuzzkit import Artefacts


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


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Artefacts:
    """The fuzz tests' valid inputs (tests/fuzz/fuzzkit.py), built once per session.

    The harness is imported here rather than at the top so that a run
    without the fuzz tests never loads it.
    """
    from fuzzkit import build_artefacts

    return build_artefacts(tmp_path_factory.mktemp("fuzz") / "net")

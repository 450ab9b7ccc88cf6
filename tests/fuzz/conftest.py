"""The fuzz tests' harness (fuzzkit.py) and their valid inputs, built once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from fuzzkit import Artefacts, build_artefacts  # noqa: E402


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Artefacts:
    return build_artefacts(tmp_path_factory.mktemp("fuzz") / "net")

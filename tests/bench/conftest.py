"""Fixtures of the benchmark package's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The multi-process tests' port picker lives beside them in tests/node.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from netfixture import free_base_port


@pytest.fixture
def bench_base_port() -> int:
    """A base port whose four validators' API and peer ports are free."""
    port: int = free_base_port(4)
    return port

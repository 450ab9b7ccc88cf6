"""contracts/ must stay pure: no I/O, clock, randomness or floats.

The test parses every module of contracts/ and fails on an import of a
banned module (at any depth of a dotted name), on any import of a project
package other than contracts, consensus.codec and consensus.merkle (pure
hashing: the receipts root is a Merkle tree), on a float literal and
on a call of ``float``.  It also checks that the scan itself works by
running it on small snippets that must be refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ALLOWED_CONSENSUS_MODULES = frozenset({"consensus.codec", "consensus.merkle"})
BANNED = frozenset(
    {
        "time", "datetime", "random", "secrets", "os", "socket", "asyncio", "threading",
        "subprocess", "pathlib", "io", "uuid", "sqlite3", "aiohttp", "node", "multiprocessing",
        "sys", "signal", "shutil", "tempfile", "urllib", "http", "concurrent", "ctypes",
    }
)  # fmt: skip


def violations(source: str, name: str) -> list[str]:
    found: list[str] = []
    tree = ast.parse(source, name)
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        for module in modules:
            root = module.split(".")[0]
            line = getattr(node, "lineno", 0)
            if root in BANNED:
                found.append(f"{name}:{line}: imports {module}")
            if root == "consensus" and module not in ALLOWED_CONSENSUS_MODULES:
                found.append(
                    f"{name}:{line}: imports {module}; only {sorted(ALLOWED_CONSENSUS_MODULES)} are allowed"
                )
        if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            found.append(f"{name}:{node.lineno}: float literal {node.value!r}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "float"
        ):
            found.append(f"{name}:{node.lineno}: calls float()")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"__import__", "open", "eval", "exec"}
        ):
            found.append(f"{name}:{node.lineno}: calls {node.func.id}()")
    return found


def test_contracts_have_no_banned_imports_or_floats() -> None:
    files = sorted(CONTRACTS.glob("**/*.py"))
    assert len(files) > 10, "the walk found the contracts package"
    problems = [problem for path in files for problem in violations(path.read_text(), path.name)]
    assert problems == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import time",
        "from datetime import datetime",
        "import os.path",
        "from node.runtime.storage import x",
        "from consensus.replica import Replica",
        "x = 0.5",
        "y = float(3)",
        "import random as r",
        "from asyncio import sleep",
        "z = 1e3",
    ],
)
def test_scan_catches_each_kind_of_violation(snippet: str) -> None:
    assert violations(snippet, "snippet.py")


def test_scan_allows_the_codec_and_integers() -> None:
    assert violations("from consensus.codec import encode\nx = 10_000 // 3", "ok.py") == []

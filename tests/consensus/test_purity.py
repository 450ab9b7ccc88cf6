"""consensus/ stays pure: no I/O, clocks, threads or unseeded randomness.

The simulator may use ``random.Random`` built from a seed; nothing else in
consensus/ may import ``random`` at all.  The simulator's command-line entry
point is the only module allowed to touch ``sys`` (it prints and exits).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSENSUS = ROOT / "consensus"

BANNED_MODULES = {
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "time",
    "datetime",
    "os",
    "sys",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "threading",
    "multiprocessing",
    "subprocess",
    "concurrent",
    "sqlite3",
    "secrets",
    "uuid",
    "signal",
    "aiohttp",
    "http",
    "urllib",
    "node",
    "logging",
}
ENTRY_POINT = CONSENSUS / "sim" / "__main__.py"


def _modules() -> list[Path]:
    return sorted(CONSENSUS.rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    found: list[tuple[str, list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def impurities(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    in_sim = "sim" in path.relative_to(CONSENSUS).parts
    for module, names, line in _imports(tree):
        top = module.split(".")[0]
        if top == "sys" and path == ENTRY_POINT:
            continue
        if top in BANNED_MODULES:
            problems.append(f"{path.name}:{line} imports {module}")
        if top == "random" and not (in_sim and module == "random" and names == ["Random"]):
            problems.append(f"{path.name}:{line} imports randomness other than a seeded Random")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "Random"
            and not node.args
        ):
            problems.append(f"{path.name}:{node.lineno} builds an unseeded Random()")
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            problems.append(f"{path.name}:{node.lineno} has a float literal")
    return problems


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_consensus_module_is_pure(path: Path) -> None:
    assert impurities(path) == []


def test_the_purity_check_catches_banned_imports(tmp_path: Path) -> None:
    bad = CONSENSUS / "sim" / "_purity_probe_tmp.py"
    bad.write_text("import time\nfrom random import random\nx = 0.5\nr = Random()\n")
    try:
        problems = impurities(bad)
    finally:
        bad.unlink()
    assert len(problems) == 4

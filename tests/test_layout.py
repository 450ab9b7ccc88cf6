"""The package layout's import rules (docs/ARCHITECTURE.md), enforced.

Why a test: a rule that lives only in a document is broken by the first
convenient import.  Every ``import`` and ``from ... import`` in consensus/,
contracts/ and node/ is read from the source (including imports inside
functions, which a lazy import would otherwise hide), and each must point
down the layer table below or stay inside its own layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Each layer, most specific prefix first, and the layers it may import.  The
# order of this table is the dependency order: a layer imports only layers
# listed above it (and itself).
LAYERS: dict[str, frozenset[str]] = {
    "consensus": frozenset({"consensus"}),
    # The canonical encoder and signing helpers are the one part of consensus
    # the contracts share (there are never two encoders), and its Merkle tree
    # (a receipts root is one: contracts/results.py; never two tree shapes).
    "contracts": frozenset({"contracts", "consensus.codec", "consensus.merkle"}),
    "node.sdk": frozenset({"consensus", "contracts", "node.sdk"}),
    "node.runtime": frozenset({"consensus", "contracts", "node.sdk", "node.runtime"}),
    "node.api": frozenset({"consensus", "contracts", "node.sdk", "node.runtime", "node.api"}),
    "node.app": frozenset(
        {"consensus", "contracts", "node.sdk", "node.runtime", "node.api", "node.app"}
    ),
    "node.ops": frozenset(
        {"consensus", "contracts", "node.sdk", "node.runtime", "node.api", "node.app", "node.ops"}
    ),
}

# Third-party packages each layer may import; anything else must be standard
# library.  The SDK's list is what a participant installs without the
# `node` extra (pyproject.toml): no metrics, no event-loop replacement, no
# certificate authority.
THIRD_PARTY: dict[str, frozenset[str]] = {
    "consensus": frozenset({"msgpack", "nacl"}),
    "contracts": frozenset(),
    "node.sdk": frozenset({"aiohttp", "msgpack"}),
    "node.runtime": frozenset({"aiohttp", "msgpack", "cryptography", "prometheus_client"}),
    "node.api": frozenset({"aiohttp", "msgpack", "prometheus_client"}),
    "node.app": frozenset({"aiohttp", "uvloop"}),
    "node.ops": frozenset({"aiohttp", "msgpack", "cryptography"}),
}

FIRST_PARTY = ("consensus", "contracts", "node")
SERVER_ONLY = ("uvloop", "prometheus_client", "cryptography")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer_of(module: str) -> str | None:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute module name ``path`` imports, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            assert node.module is not None
            # `from node.api import audit` imports node.api.audit: name the
            # submodule so the rule sees which layer it belongs to.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _sources() -> list[Path]:
    return sorted(p for package in FIRST_PARTY for p in (REPO / package).rglob("*.py"))


def _allowed(layer: str, target: str) -> bool:
    return any(target == ok or target.startswith(ok + ".") for ok in LAYERS[layer])


def test_every_module_of_the_cores_and_node_belongs_to_a_layer() -> None:
    orphans = [str(p) for p in _sources() if _layer_of(_module_name(p)) is None]
    # node/__init__.py is the namespace itself and imports nothing.
    assert orphans == [str(REPO / "node" / "__init__.py")]


def test_imports_point_down_the_layer_table() -> None:
    wrong: list[str] = []
    for path in _sources():
        layer = _layer_of(_module_name(path))
        if layer is None:
            continue
        for line, target in _imports(path):
            if target.split(".")[0] in FIRST_PARTY and not _allowed(layer, target):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {layer} imports {target}")
    assert wrong == []


def test_third_party_imports_stay_within_each_layers_list() -> None:
    wrong: list[str] = []
    for path in _sources():
        layer = _layer_of(_module_name(path))
        if layer is None:
            continue
        for line, target in _imports(path):
            top = target.split(".")[0]
            if top in FIRST_PARTY or top in sys.stdlib_module_names or top == "__future__":
                continue
            if top not in THIRD_PARTY[layer]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {layer} imports {top}")
    assert wrong == []


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an SDK module importing the server is reported."""
    assert not _allowed("node.sdk", "node.runtime.config")
    assert not _allowed("node.runtime", "node.api.routes")
    assert not _allowed("contracts", "consensus.replica")
    assert _allowed("node.api", "node.runtime.storage")


# Run Python with the server's dependencies made unimportable, as on a
# participant's machine that installed only `pip install provenet`.
_WITHOUT_SERVER_PACKAGES = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
"""

_IMPORT_EVERY_SDK_MODULE = """
import importlib, pkgutil
import node.sdk
names = [m.name for m in pkgutil.walk_packages(node.sdk.__path__, "node.sdk.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""

_RUN_CLI = """
from node.ops.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _without_server(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    script = _WITHOUT_SERVER_PACKAGES.format(blocked=set(SERVER_ONLY)) + code
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_sdk_imports_without_any_server_dependency() -> None:
    """A participant's client needs none of the node's own dependencies."""
    result = _without_server(_IMPORT_EVERY_SDK_MODULE)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 10, "walk found the SDK's modules"


def test_without_the_node_extra_the_cli_signs_and_says_what_a_node_needs(tmp_path: Path) -> None:
    """Participant commands work; node commands name the extra in one line."""
    help_text = _without_server(_RUN_CLI, "tx", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "--as ORG" in help_text.stdout
    init = _without_server(_RUN_CLI, "net", "init", str(tmp_path / "net"), "--validators", "4")
    assert init.returncode == 1
    assert init.stderr.strip().splitlines() == [
        "provenet: error: this command runs or sets up a node, which needs the node's "
        "dependencies (missing: cryptography): pip install 'provenet[node]'"
    ]


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_has_modules(layer: str) -> None:
    """A renamed package would otherwise make its rules vacuous."""
    assert any(_layer_of(_module_name(p)) == layer for p in _sources())

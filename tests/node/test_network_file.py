"""network.json: one typed model, one reader, one writer, one kind of error.

``net up/status/down`` (netctl) and the participant SDK and CLI (``--net
DIR``) used to parse the file each in their own way, with different errors
for the same mistake; now both read it through
:func:`node.sdk.network_file.read_network`, whose error is one line naming
the file, the key and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.ops.netctl import NetError, load_network
from node.ops.netinit import init_network
from node.sdk.client import ProvenetClient
from node.sdk.network_file import ConfigError, read_network, write_network


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("netfile") / "net"
    init_network(root, 2, tls=False, observers=1, base_port=17_950)
    return root


def _edited(net: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """A copy of ``net``'s network.json (with its genesis) after ``edit``."""
    document = json.loads((net / "network.json").read_text())
    edit(document)
    (tmp_path / "network.json").write_text(json.dumps(document))
    (tmp_path / "genesis.json").write_bytes((net / "genesis.json").read_bytes())
    return tmp_path


def test_what_is_written_reads_back_as_the_same_network(net: Path) -> None:
    network = read_network(net)
    assert [(n.name, n.role, n.replica_id) for n in network.nodes] == [
        ("v0", "validator", 0),
        ("v1", "validator", 1),
        ("o0", "observer", None),
    ]
    assert network.nodes[0].config == net.resolve() / "nodes" / "v0" / "config.json"
    assert network.ca_file is None and network.ssl_context() is None
    before = (net / "network.json").read_bytes()
    write_network(network)
    assert (net / "network.json").read_bytes() == before
    assert read_network(net) == network


def _set(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda document: document.__setitem__(key, value)


def _set_in_node(index: int, key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda document: document["nodes"][index].__setitem__(key, value)


MISTAKES = [
    (_set("tls", "yes"), "tls: expected true or false"),
    (_set("nodes", []), "nodes: expected a list of at least 1 item"),
    (lambda d: d.pop("chain_id"), "chain_id: missing"),
    (_set("chian_id", "x"), "chian_id: unknown key (did you mean 'chain_id'?)"),
    (_set_in_node(1, "name", "v0"), 'nodes[1].name: name "v0" appears twice'),
    (_set_in_node(0, "replica_id", None), "nodes[0].replica_id: expected a validator's id"),
    (_set_in_node(2, "role", "watcher"), "nodes[2].role: expected one of 'observer'"),
    (_set("orgs", {"farm": 7}), "orgs.farm: expected a non-empty string"),
]


@pytest.mark.parametrize(("edit", "expected"), MISTAKES)
def test_every_reader_refuses_a_mistake_with_one_line_naming_the_key(
    net: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], object], expected: str
) -> None:
    directory = _edited(net, tmp_path, edit)
    where = f"{directory.resolve() / 'network.json'}: "
    with pytest.raises(ConfigError) as by_model:
        read_network(directory)
    with pytest.raises(NetError) as by_netctl:
        load_network(directory)
    with pytest.raises(ConfigError) as by_sdk:
        ProvenetClient.from_network_dir(directory)
    message = str(by_model.value)
    assert message.startswith(where + expected) and "\n" not in message
    assert str(by_netctl.value) == str(by_sdk.value) == message


def test_a_file_that_is_not_json_is_one_line_too(tmp_path: Path) -> None:
    (tmp_path / "network.json").write_text("{nodes: [}")
    with pytest.raises(NetError, match=r"network\.json: is not valid JSON"):
        load_network(tmp_path)


def test_a_directory_without_network_json_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(NetError, match=r"is not a network directory .* provenet net init"):
        load_network(tmp_path)

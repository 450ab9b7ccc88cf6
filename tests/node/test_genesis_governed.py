"""genesis.json puts the validator set under governance only when it says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from netfixture import free_base_port

from consensus.config import ReplicaConfig
from consensus.epochs import EpochRules
from contracts.genesis import genesis_state
from contracts.validators import VALIDATORS_KEY
from node.app import start_node
from node.ops.netinit import init_network
from node.runtime.config import load_node_config
from node.sdk.genesis import load_genesis
from node.sdk.schema import ConfigError

BASE_PORT = free_base_port(4)


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    init_network(tmp_path / "net", 4, tls=False, base_port=BASE_PORT)
    return tmp_path / "net" / "genesis.json"


def test_net_init_writes_a_governed_set_with_each_validators_addresses(
    genesis_file: Path,
) -> None:
    network = load_genesis(genesis_file)
    governed = network.genesis.validators
    assert [v.public_key for v in governed] == list(network.validator_set().public_keys)
    assert governed[1].peer_address == f"127.0.0.1:{BASE_PORT + 101}"
    assert governed[1].api_address == f"127.0.0.1:{BASE_PORT + 1}"
    assert governed[1].tls_identity == "v1"
    assert VALIDATORS_KEY in dict(genesis_state(network.genesis))


def test_without_the_flag_the_set_stays_out_of_state(genesis_file: Path) -> None:
    document = json.loads(genesis_file.read_text())
    del document["governed_validators"], document["epoch_rules"]
    genesis_file.write_text(json.dumps(document))
    network = load_genesis(genesis_file)
    assert network.genesis.validators == ()
    assert VALIDATORS_KEY not in dict(genesis_state(network.genesis))


def test_a_governed_validator_without_addresses_is_one_line_naming_it(
    genesis_file: Path,
) -> None:
    document = json.loads(genesis_file.read_text())
    del document["validators"][2]["peer_address"]
    genesis_file.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="validator v2: governed_validators needs"):
        load_genesis(genesis_file)


def test_net_init_writes_the_chain_wide_epoch_rules(genesis_file: Path) -> None:
    document = json.loads(genesis_file.read_text())
    defaults = ReplicaConfig.checkpoint_interval, ReplicaConfig.window_size
    assert document["epoch_rules"] == {
        "checkpoint_interval": defaults[0],
        "window_size": defaults[1],
    }
    assert load_genesis(genesis_file).epoch_rules == EpochRules(*defaults)


def test_epoch_rules_without_governance_are_refused(genesis_file: Path) -> None:
    document = json.loads(genesis_file.read_text())
    del document["governed_validators"]
    genesis_file.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="epoch_rules apply only with governed_validators"):
        load_genesis(genesis_file)


@pytest.mark.asyncio
@pytest.mark.parametrize("role", ["v1", "o0"])
async def test_a_node_configured_off_the_genesis_epoch_rules_refuses_to_start(
    tmp_path: Path, role: str
) -> None:
    """Two nodes placing a validator-set change at different heights would
    disagree on the set in force (a fork of the set): the rules are the
    chain's, and a validator or observer configured otherwise stops at once."""
    net = tmp_path / "net"
    init_network(net, 4, tls=False, base_port=free_base_port(5), observers=1)
    path = net / "nodes" / role / "config.json"
    config = json.loads(path.read_text())
    config["consensus"] = {"checkpoint_interval": 4, "window_size": 8}
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="differ from genesis epoch_rules"):
        await start_node(load_node_config(path))
    # The same values written into genesis.json make it start.
    genesis = net / "genesis.json"
    document = json.loads(genesis.read_text())
    document["epoch_rules"] = config["consensus"]
    genesis.write_text(json.dumps(document))
    node = await start_node(load_node_config(path))
    await node.stop()

"""genesis.json puts the validator set under governance only when it says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from netfixture import free_base_port

from contracts.genesis import genesis_state
from contracts.validators import VALIDATORS_KEY
from node.ops.netinit import init_network
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
    del document["governed_validators"]
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

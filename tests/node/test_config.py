"""config.json and genesis.json: every unknown key and malformed value stops the node.

Why: a typo such as ``listen_hots`` used to be ignored (the node ran on the
default) and a genesis with an unknown role ended in a traceback.  Each
case below must give one ConfigError line naming the file, the key and
what was expected; and ``provenet node run`` must print that line and exit
2, without a traceback.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netfixture import REPO, free_base_port

from node.ops.netctl import load_network
from node.ops.netinit import init_network
from node.runtime.config import load_node_config
from node.sdk.genesis import load_genesis
from node.sdk.schema import ConfigError

Document = dict[str, Any]
Mutation = Callable[[Document], object]
RUN_TIMEOUT_S = 60
# Networks only written and loaded, never run, need no free ports.
BASE_PORT = 17_900


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("net")
    init_network(root, 4, observers=1, base_port=BASE_PORT)
    return root


def _read(path: Path) -> Document:
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


def _mutated(source: Path, target: Path, mutate: Mutation) -> Path:
    document = copy.deepcopy(_read(source))
    mutate(document)
    target.write_text(json.dumps(document))
    return target


def _assert_names(error: ConfigError, path: Path, key: str, expected: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


def _set(*keys: str | int, value: object) -> Mutation:
    """Set document[k1][k2]... = value."""

    def mutate(document: Document) -> None:
        target: Any = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _rename(*keys: str | int, to: str) -> Mutation:
    """Rename the last key of the path (a typo)."""

    def mutate(document: Document) -> None:
        target: Any = document
        for key in keys[:-1]:
            target = target[key]
        target[to] = target.pop(keys[-1])

    return mutate


def _delete(*keys: str | int) -> Mutation:
    def mutate(document: Document) -> None:
        target: Any = document
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return mutate


# ------------------------------------------------------------ config.json


def _same_ports(document: Document) -> None:
    document["peer_port"] = document["api_port"]


CONFIG_CASES: list[tuple[str, Mutation, str, str]] = [
    # (case, mutation, key named, words of the expectation)
    ("typo top level", _rename("listen_host", to="listen_hots"), "listen_hots", "'listen_host'"),
    ("typo in tls", _rename("tls", "enabled", to="enabeld"), "tls.enabeld", "'enabled'"),
    ("typo in a peer", _rename("peers", 0, "peer_url", to="peer_ur"), "peers[0].peer_ur", "unknown"),
    (
        "typo in consensus",
        _set("consensus", "max_batch_sise", value=10),
        "consensus.max_batch_sise",
        "'max_batch_size'",
    ),
    (
        "consensus field the node sets",
        _set("consensus", "replica_id", value=3),
        "consensus.replica_id",
        "unknown key",
    ),
    (
        "typo in limits",
        _set("limits", "mempool_max_tx", value=10),
        "limits.mempool_max_tx",
        "'mempool_max_txs'",
    ),
    ("port as a string", _set("api_port", value="7100"), "api_port", "an integer, 1..65535"),
    ("port as a boolean", _set("api_port", value=True), "api_port", "an integer, 1..65535"),
    ("port out of range", _set("peer_port", value=70_000), "peer_port", "an integer, 1..65535"),
    ("port negative", _set("api_port", value=-1), "api_port", "an integer, 1..65535"),
    ("same two ports", _same_ports, "peer_port", "a port other than api_port"),
    ("unknown role", _set("role", value="validatr"), "role", "one of 'observer', 'validator'"),
    ("empty chain id", _set("chain_id", value=""), "chain_id", "a non-empty string"),
    ("path not a string", _set("data_dir", value=5), "data_dir", "a non-empty string"),
    ("org id with spaces", _set("org_id", value="lead firm"), "org_id", "an identifier"),
    ("validator without id", _delete("replica_id"), "replica_id", "missing"),
    ("validator without key", _delete("key_file"), "key_file", "missing"),
    ("replica id as a string", _set("replica_id", value="0"), "replica_id", "an integer"),
    ("tls.enabled as a string", _set("tls", "enabled", value="yes"), "tls.enabled", "true or false"),
    ("tls.enabled as 1", _set("tls", "enabled", value=1), "tls.enabled", "true or false"),
    ("tls without a key", _delete("tls", "key_file"), "tls.key_file", "missing"),
    ("tls not an object", _set("tls", value=True), "tls", "an object"),
    ("peers not a list", _set("peers", value={}), "peers", "a list"),
    ("peer id as a string", _set("peers", 0, "replica_id", value="1"), "peers[0].replica_id", "an integer"),
    ("peer url scheme", _set("peers", 0, "peer_url", value="http://127.0.0.1:1/peer"), "peers[0].peer_url", "wss://"),
    ("peer url without tls", _set("peers", 0, "peer_url", value="ws://127.0.0.1:1/peer"), "peers[0].peer_url", "wss://"),
    ("peer url without port", _set("peers", 0, "api_url", value="https://127.0.0.1"), "peers[0].api_url", "a port"),
    ("peer listed twice", _set("peers", 1, "replica_id", value=0), "peers[1].replica_id", "twice"),
    ("itself as a peer", _set("peers", 1, "replica_id", value=1), "peers[1].replica_id", "not this node's own"),
    ("consensus value a string", _set("consensus", "max_batch_size", value="big"), "consensus.max_batch_size", "an integer"),
    ("consensus value negative", _set("consensus", "batch_timeout_ms", value=-1), "consensus.batch_timeout_ms", "an integer"),
    ("consensus value a boolean", _set("consensus", "window_size", value=True), "consensus.window_size", "an integer"),
    ("consensus values that clash", _set("consensus", "window_size", value=12), "consensus", "window_size"),
    ("limit negative", _set("limits", "mempool_max_txs", value=-5), "limits.mempool_max_txs", "an integer"),
    ("limit a float", _set("limits", "max_body_bytes", value=1.5), "limits.max_body_bytes", "an integer"),
    ("a zero chunk", _set("limits", "admission_chunk_envelopes", value=0), "limits.admission_chunk_envelopes", "at least 1"),
    ("a zero budget", _set("limits", "client_cost_per_s", value=0), "limits.client_cost_per_s", "at least 1"),
    ("a zero send timeout", _set("limits", "chain_stream_send_timeout_ms", value=0), "limits.chain_stream_send_timeout_ms", "at least 1"),
    ("no chain streams per address", _set("limits", "max_chain_streams_per_address", value=0), "limits.max_chain_streams_per_address", "at least 1"),
    ("limits not an object", _set("limits", value=[]), "limits", "an object"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "expected"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_config_error_names_the_file_and_key(
    net: Path, tmp_path: Path, mutate: Mutation, key: str, expected: str
) -> None:
    path = _mutated(net / "nodes" / "v1" / "config.json", tmp_path / "config.json", mutate)
    with pytest.raises(ConfigError) as caught:
        load_node_config(path)
    _assert_names(caught.value, path, key, expected)


def test_an_observer_has_no_replica_id(net: Path, tmp_path: Path) -> None:
    path = _mutated(
        net / "nodes" / "o0" / "config.json", tmp_path / "config.json", _set("replica_id", value=4)
    )
    with pytest.raises(ConfigError) as caught:
        load_node_config(path)
    _assert_names(caught.value, path, "replica_id", "an observer has no replica_id")


def test_a_plain_network_refuses_tls_urls(tmp_path: Path) -> None:
    init_network(tmp_path / "plain", 2, tls=False, base_port=BASE_PORT)
    source = tmp_path / "plain" / "nodes" / "v0" / "config.json"
    path = _mutated(
        source, tmp_path / "config.json", _set("peers", 0, "peer_url", value="wss://h:1/peer")
    )
    with pytest.raises(ConfigError) as caught:
        load_node_config(path)
    _assert_names(caught.value, path, "peers[0].peer_url", "a URL starting ws:// (tls is disabled)")


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('{"api_port": 1, "api_port": 2}', "api_port", "appears twice"),
        ("[]", "(top level)", "a JSON object"),
        ("{", "", "not valid JSON"),
        ("[" * 100_000, "", "not valid JSON"),
    ],
    ids=["duplicate key", "not an object", "truncated", "nested too deeply"],
)
def test_config_that_is_not_one_json_object(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_node_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}") and expected in message and "\n" not in message


# ------------------------------------------------------------ genesis.json


def _first_certifier_without_scopes(document: Document) -> None:
    org = next(o for o in document["organisations"] if not o["scopes"])
    org["scopes"] = ["organic"]


def _org_index_without_scopes(net: Path) -> int:
    orgs = _read(net / "genesis.json")["organisations"]
    return next(i for i, org in enumerate(orgs) if not org["scopes"])


def _shared_key(document: Document) -> None:
    document["organisations"][1]["keys"] = list(document["organisations"][0]["keys"])


def _shared_validator_key(document: Document) -> None:
    document["validators"][1]["public_key"] = document["validators"][0]["public_key"]


def _shared_org_id(document: Document) -> None:
    document["organisations"][1]["org_id"] = document["organisations"][0]["org_id"]


GENESIS_CASES: list[tuple[str, Mutation, str, str]] = [
    ("typo top level", _rename("threshold", to="treshold"), "treshold", "'threshold'"),
    ("typo in an organisation", _rename("organisations", 0, "roles", to="role"), "organisations[0].role", "'roles'"),
    ("typo in a validator", _rename("validators", 2, "public_key", to="pubkey"), "validators[2].pubkey", "'public_key'"),
    ("threshold of one number", _set("threshold", value=[2]), "threshold", "[numerator, denominator]"),
    ("threshold as text", _set("threshold", value="2/3"), "threshold", "[numerator, denominator]"),
    ("threshold above one", _set("threshold", value=[3, 2]), "threshold", "0 < numerator <= denominator"),
    ("threshold of zero", _set("threshold", value=[0, 3]), "threshold", "0 < numerator <= denominator"),
    ("threshold with a boolean", _set("threshold", value=[True, 3]), "threshold", "integers"),
    ("threshold with a string", _set("threshold", value=[2, "3"]), "threshold", "integers"),
    ("unknown role", _set("organisations", 1, "roles", value=["wizard"]), "organisations[1].roles[0]", "one of 'certifier'"),
    ("no roles", _set("organisations", 1, "roles", value=[]), "organisations[1].roles", "a list of at least 1 item"),
    ("roles as a string", _set("organisations", 1, "roles", value="certifier"), "organisations[1].roles", "a list"),
    ("role twice", _set("organisations", 1, "roles", value=["supplier", "supplier"]), "organisations[1].roles[1]", "twice"),
    ("unknown scope", _set("organisations", 0, "scopes", value=["magic"]), "organisations[0].scopes[0]", "one of 'food_safety'"),
    ("org id with spaces", _set("organisations", 0, "org_id", value="lead firm"), "organisations[0].org_id", "an identifier"),
    ("org id twice", _shared_org_id, "organisations[1].org_id", "twice"),
    ("country in lower case", _set("organisations", 0, "country", value="be"), "organisations[0].country", "ISO 3166-1"),
    ("org key not hex", _set("organisations", 0, "keys", 0, value="zz" * 32), "organisations[0].keys[0]", "32 bytes as 64 hex digits"),
    ("org key too short", _set("organisations", 0, "keys", 0, value="ab" * 31), "organisations[0].keys[0]", "32 bytes"),
    ("org without keys", _set("organisations", 0, "keys", value=[]), "organisations[0].keys", "at least 1"),
    ("one key for two orgs", _shared_key, "organisations[1].keys[0]", "twice"),
    ("no organisations", _set("organisations", value=[]), "organisations", "at least 1"),
    ("kp participant in lower case", _set("kp_participants", value=["bw"]), "kp_participants[0]", "ISO 3166-1"),
    ("kp participants as a string", _set("kp_participants", value="BW"), "kp_participants", "a list"),
    ("genesis time negative", _set("genesis_time_ms", value=-1), "genesis_time_ms", "an integer, at least 0"),
    ("genesis time as a string", _set("genesis_time_ms", value="0"), "genesis_time_ms", "an integer"),
    ("genesis time a float", _set("genesis_time_ms", value=1.5), "genesis_time_ms", "an integer"),
    ("yield zero", _set("max_cutting_yield_bp", value=0), "max_cutting_yield_bp", "1..10000"),
    ("yield above 100%", _set("max_cutting_yield_bp", value=10_001), "max_cutting_yield_bp", "1..10000"),
    ("yield as a string", _set("max_cutting_yield_bp", value="6000"), "max_cutting_yield_bp", "an integer"),
    ("chain id a number", _set("chain_id", value=7), "chain_id", "a non-empty string"),
    ("validator key not hex", _set("validators", 0, "public_key", value="00"), "validators[0].public_key", "32 bytes"),
    ("validator id beyond the set", _set("validators", 3, "replica_id", value=5), "validators[3].replica_id", "0..3"),
    ("validator id twice", _set("validators", 3, "replica_id", value=0), "validators[3].replica_id", "twice"),
    ("validator of an unknown org", _set("validators", 0, "org_id", value="nobody"), "validators[0].org_id", "one of the organisations"),
    ("validator key twice", _shared_validator_key, "validators[1].public_key", "twice"),
    ("no validators", _set("validators", value=[]), "validators", "at least 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "expected"),
    [case[1:] for case in GENESIS_CASES],
    ids=[case[0] for case in GENESIS_CASES],
)
def test_genesis_error_names_the_file_and_key(
    net: Path, tmp_path: Path, mutate: Mutation, key: str, expected: str
) -> None:
    path = _mutated(net / "genesis.json", tmp_path / "genesis.json", mutate)
    with pytest.raises(ConfigError) as caught:
        load_genesis(path)
    _assert_names(caught.value, path, key, expected)


def test_scopes_need_the_certifier_role(net: Path, tmp_path: Path) -> None:
    index = _org_index_without_scopes(net)
    roles = _read(net / "genesis.json")["organisations"][index]["roles"]
    assert "certifier" not in roles
    path = _mutated(
        net / "genesis.json", tmp_path / "genesis.json", _first_certifier_without_scopes
    )
    with pytest.raises(ConfigError) as caught:
        load_genesis(path)
    _assert_names(caught.value, path, f"organisations[{index}].scopes", "'certifier' role")


# ------------------------------------------------------------ what net init writes


def test_every_file_net_init_writes_loads(net: Path, tmp_path: Path) -> None:
    init_network(tmp_path / "plain", 2, tls=False, observers=1, base_port=BASE_PORT)
    for root in (net, tmp_path / "plain"):
        network = load_network(root)
        genesis = load_genesis(root / "genesis.json")
        assert len(genesis.validators) == sum(n.role == "validator" for n in network.nodes)
        for entry in network.nodes:
            config = load_node_config(entry.config)
            assert (config.node_name, config.role, config.chain_id) == (
                entry.name,
                entry.role,
                genesis.chain_id,
            )


# ------------------------------------------------------------ the command


@pytest.mark.parametrize(
    ("config_mutation", "genesis_mutation", "key"),
    [
        (_rename("listen_host", to="listen_hots"), None, "listen_hots"),
        (_rename("tls", "enabled", to="enabeld"), None, "tls.enabeld"),
        (None, _set("threshold", value=[2]), "threshold"),
        (None, _set("organisations", 1, "roles", value=["wizard"]), "organisations[1].roles[0]"),
    ],
    ids=["config typo", "tls typo", "threshold [2]", "unknown role"],
)
def test_node_run_prints_one_line_and_exits_2(
    tmp_path: Path,
    config_mutation: Mutation | None,
    genesis_mutation: Mutation | None,
    key: str,
) -> None:
    init_network(tmp_path, 1, tls=True, base_port=free_base_port(1))
    node_dir = tmp_path / "nodes" / "v0"
    bad_file = node_dir / "config.json"
    if config_mutation is not None:
        _mutated(bad_file, bad_file, config_mutation)
    if genesis_mutation is not None:
        bad_file = tmp_path / "genesis.json"
        _mutated(bad_file, bad_file, genesis_mutation)
    # A node that starts in spite of the defect would run until the timeout:
    # the test then fails with TimeoutExpired, and subprocess kills it.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.ops.cli",
            "node",
            "run",
            "--config",
            str(node_dir / "config.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert f"{bad_file}: {key}: " in lines[0]

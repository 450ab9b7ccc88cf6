"""`provenet net init` writes a network that loads back, with working mutual TLS.

Why real handshakes: a certificate with the wrong EKU, SAN or CA flag looks
fine in a file and fails only when two nodes connect.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509

from consensus.codec import Ed25519Signer
from node.ops.catalog import ORGS
from node.ops.cli import main
from node.ops.netctl import NetError, load_network, status, stop_nodes
from node.ops.netinit import init_network
from node.runtime.config import load_node_config
from node.runtime.tls import (
    issue_node_cert,
    make_ca,
    peer_common_name,
    server_context,
)
from node.sdk.genesis import load_genesis
from node.sdk.keys import Identity, load_identity, save_identity
from node.sdk.tls import client_context

TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("net")
    init_network(root, 4, base_port=17_400)
    return root


def test_every_config_loads_and_matches_network_json(net: Path) -> None:
    network = load_network(net)
    assert [n.name for n in network.nodes] == ["v0", "v1", "v2", "v3"]
    assert [n.org_id for n in network.nodes] == ["leadfirm", "miner", "cutter", "lab"]
    for index, entry in enumerate(network.nodes):
        config = load_node_config(entry.config)
        assert (config.node_name, config.replica_id, config.role) == (
            entry.name,
            index,
            "validator",
        )
        assert (config.api_port, config.peer_port) == (17_400 + index, 17_500 + index)
        assert entry.api_url == f"https://127.0.0.1:{17_400 + index}"
        assert entry.peer_url == f"wss://127.0.0.1:{17_500 + index}/peer"
        assert config.genesis_file == net / "genesis.json"
        assert config.data_dir == entry.directory / "data"
        assert config.tls.enabled and config.tls.ca_file == net / "ca" / "ca.pem"
        assert config.tls.cert_file and config.tls.cert_file.is_file()
        assert sorted(p.name for p in config.peers) == sorted(
            {"v0", "v1", "v2", "v3"} - {entry.name}
        )
        for secret in (config.key_file, config.tls.key_file):
            assert secret and secret.stat().st_mode & 0o777 == 0o600


def test_genesis_validators_are_the_node_keys_in_replica_order(net: Path) -> None:
    network = load_network(net)
    genesis = load_genesis(net / "genesis.json")
    node_keys = []
    for entry in network.nodes:
        config = load_node_config(entry.config)
        assert config.key_file is not None
        identity = load_identity(config.key_file)
        assert identity.org_id == entry.org_id
        node_keys.append(identity.public_key)
    assert genesis.validator_set().public_keys == tuple(node_keys)
    assert [v.name for v in sorted(genesis.validators, key=lambda v: v.replica_id)] == [
        "v0",
        "v1",
        "v2",
        "v3",
    ]


def test_org_keys_load_and_match_genesis(net: Path) -> None:
    network = load_network(net)
    genesis = load_genesis(net / "genesis.json")
    declared = {org.org_id: org.keys for org in genesis.genesis.organisations}
    assert set(network.orgs) == set(declared)
    assert "regulator" in declared and "safety-lab" in declared
    for org_id, path in network.orgs.items():
        identity = load_identity(path)
        assert identity.org_id == org_id
        assert declared[org_id] == (identity.public_key,)
        assert path.stat().st_mode & 0o777 == 0o600
    kp_bw = next(o for o in genesis.genesis.organisations if o.org_id == "kp-bw")
    assert (kp_bw.country, kp_bw.roles, kp_bw.scopes) == ("BW", ("certifier",), ("kp_authority",))


# ------------------------------------------------------------ TLS


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[object, object]:
    """Connect client to server on loopback; (server outcome, client outcome).

    An outcome is the peer's CN on success or the exception raised.  With
    TLS 1.3 the client learns of a refused client certificate only on its
    first read, so the client reads the server's one-byte greeting.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT_S)
    outcome: dict[str, object] = {}

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(TIMEOUT_S)
            with server.wrap_socket(raw, server_side=True) as conn:
                outcome["server"] = peer_common_name(conn)
                conn.sendall(b"!")
        except (OSError, ssl.SSLError) as exc:
            outcome["server"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        raw = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_S)
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            greeting = conn.recv(1)
            outcome["client"] = peer_common_name(conn) if greeting == b"!" else EOFError()
    except (OSError, ssl.SSLError) as exc:
        outcome["client"] = exc
    thread.join(TIMEOUT_S)
    listener.close()
    return outcome.get("server"), outcome.get("client")


def _files(net: Path, name: str) -> tuple[Path, Path]:
    return net / "nodes" / name / "tls.pem", net / "nodes" / name / "tls.key"


@pytest.mark.network
def test_mutual_tls_accepts_a_node_of_the_network(net: Path) -> None:
    ca = net / "ca" / "ca.pem"
    server = server_context(ca, *_files(net, "v0"), require_client_cert=True)
    server_cn, client_cn = _handshake(server, client_context(ca, *_files(net, "v1")))
    assert (server_cn, client_cn) == ("v1", "v0")


@pytest.mark.network
def test_mutual_tls_refuses_a_certificate_from_another_ca(net: Path, tmp_path: Path) -> None:
    ca = net / "ca" / "ca.pem"
    other_cert, other_key = make_ca(tmp_path / "other-ca")
    impostor = issue_node_cert(other_cert, other_key, "v1", tmp_path / "impostor")
    server = server_context(ca, *_files(net, "v0"), require_client_cert=True)
    server_result, client_result = _handshake(server, client_context(ca, *impostor))
    assert isinstance(server_result, ssl.SSLError)
    assert isinstance(client_result, (OSError, EOFError))
    # The same foreign certificate cannot pose as a server either.
    fake_server = server_context(other_cert, *impostor, require_client_cert=False)
    _, client_result = _handshake(fake_server, client_context(ca))
    assert isinstance(client_result, ssl.SSLCertVerificationError)


@pytest.mark.network
def test_api_server_without_client_cert_serves_a_plain_client(net: Path) -> None:
    ca = net / "ca" / "ca.pem"
    server = server_context(ca, *_files(net, "v2"), require_client_cert=False)
    assert _handshake(server, client_context(ca)) == (None, "v2")


@pytest.mark.network
@pytest.mark.parametrize(
    ("suite", "accepted"),
    [
        ("ECDHE-ECDSA-AES128-SHA256", False),
        ("ECDHE-ECDSA-AES256-SHA384", False),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
    ],
)
@pytest.mark.parametrize("require_client_cert", [False, True])
def test_tls12_server_accepts_aead_suites_only(
    net: Path, suite: str, accepted: bool, require_client_cert: bool
) -> None:
    """A TLS 1.2 client offering only a CBC suite gets no connection, API port or peer port."""
    ca = net / "ca" / "ca.pem"
    server = server_context(ca, *_files(net, "v0"), require_client_cert=require_client_cert)
    client = client_context(ca, *_files(net, "v1"))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(suite)
    server_result, client_result = _handshake(server, client)
    if accepted:
        expected_server = "v1" if require_client_cert else None
        assert (server_result, client_result) == (expected_server, "v0")
    else:
        assert isinstance(server_result, ssl.SSLError) and "cipher" in str(server_result).lower()
        assert isinstance(client_result, ssl.SSLError)


def test_every_context_offers_aead_suites_only(net: Path) -> None:
    """The node as a TLS client (peer links, CLI, SDK) offers no CBC suite either."""
    ca = net / "ca" / "ca.pem"
    contexts = [
        server_context(ca, *_files(net, "v0"), require_client_cert=True),
        server_context(ca, *_files(net, "v0"), require_client_cert=False),
        client_context(ca, *_files(net, "v0")),
        client_context(ca),
    ]
    for context in contexts:
        suites = {c["name"]: c["aead"] for c in context.get_ciphers()}
        assert suites and all(suites.values()), sorted(n for n, aead in suites.items() if not aead)


# ------------------------------------------------------------ options and CLI


def test_no_tls_writes_plain_urls_and_no_ca(tmp_path: Path) -> None:
    assert main(["net", "init", str(tmp_path), "--validators", "1", "--no-tls"]) == 0
    document = json.loads((tmp_path / "network.json").read_text())
    assert document["tls"] is False and document["ca_file"] is None
    assert document["nodes"][0]["api_url"] == "http://127.0.0.1:7100"
    assert document["nodes"][0]["peer_url"] == "ws://127.0.0.1:7200/peer"
    assert not (tmp_path / "ca").exists()
    assert not (tmp_path / "nodes" / "v0" / "tls.pem").exists()
    config = load_node_config(tmp_path / "nodes" / "v0" / "config.json")
    assert not config.tls.enabled and config.peers == ()


def test_hosts_gives_each_node_its_own_address_urls_and_certificate(tmp_path: Path) -> None:
    hosts = "10.9.0.1,10.9.0.2,10.9.0.3,10.9.0.4,10.9.0.9"
    argv = ["net", "init", str(tmp_path), "--validators", "4", "--observers", "1"]
    assert main([*argv, "--hosts", hosts, "--base-port", "17400"]) == 0
    network = load_network(tmp_path)
    for index, (entry, host) in enumerate(zip(network.nodes, hosts.split(","), strict=True)):
        config = load_node_config(entry.config)
        assert config.listen_host == host
        assert entry.api_url == f"https://{host}:{17_400 + index}"
        assert entry.peer_url == f"wss://{host}:{17_500 + index}/peer"
        pem = (entry.directory / "tls.pem").read_bytes()
        names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        assert ipaddress.ip_address(host) in names.value.get_values_for_type(x509.IPAddress)
        peers = {peer.name: peer.peer_url for peer in config.peers}
        assert all(url.startswith("wss://10.9.0.") for url in peers.values())
    with pytest.raises(NetError, match="one per node"):
        init_network(tmp_path / "other", 4, hosts=["10.9.0.1"])


def test_reinit_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["net", "init", str(tmp_path), "--validators", "4", "--no-tls", "--chain-id", "c1"]
    assert main(args) == 0
    first = load_genesis(tmp_path / "genesis.json").validator_set()
    with pytest.raises(NetError, match="--force"):
        init_network(tmp_path, 4)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("provenet: error:") and err.count("\n") == 1 and "--force" in err
    (tmp_path / "nodes" / "v0" / "data").mkdir()
    assert main([*args[:4], "1", "--force"]) == 0
    assert load_genesis(tmp_path / "genesis.json").validator_set() != first
    assert (
        not (tmp_path / "nodes" / "v3").exists()
        and not (tmp_path / "nodes" / "v0" / "data").exists()
    )


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["net", "init", "{d}", "--validators", "0"], 1),
        (["net", "init", "{d}", "--validators", "2", "--base-port", "65500"], 1),
        (["net", "init", "{d}"], 2),
        (["net", "status", "{d}/missing"], 1),
        (["net", "down", "{d}/missing"], 1),
        (["net", "frobnicate"], 2),
        (["bogus"], 2),
    ],
)
def test_cli_refuses_operator_mistakes(tmp_path: Path, argv: list[str], code: int) -> None:
    assert main([arg.format(d=tmp_path) for arg in argv]) == code


def test_status_and_down_of_a_stopped_network(tmp_path: Path) -> None:
    init_network(tmp_path, 2, tls=True, base_port=17_600)
    rows = status(tmp_path)
    assert [(r["name"], r["up"], r["pid"]) for r in rows] == [
        ("v0", False, None),
        ("v1", False, None),
    ]
    assert main(["net", "status", str(tmp_path)]) == 1
    assert main(["net", "down", str(tmp_path)]) == 0


def test_down_kills_a_stubborn_node_and_never_a_stranger(tmp_path: Path) -> None:
    init_network(tmp_path, 2, tls=False, base_port=17_700)
    v0, v1 = load_network(tmp_path).nodes
    # A process that ignores SIGTERM, with v0's config path on its command line like a node.
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)",
            "node.ops.cli",
            str(v0.config),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"\n"
        v0.pid_file.write_text(f"{stubborn.pid}\n")
        v1.pid_file.write_text(f"{os.getpid()}\n")  # a reused pid: this test process
        outcome = stop_nodes([v0, v1], grace_s=0.3)
        assert outcome == {"v0": "killed", "v1": "not running"}
        assert stubborn.wait(TIMEOUT_S) == -signal.SIGKILL
        assert not v0.pid_file.exists() and not v1.pid_file.exists()
    finally:
        stubborn.kill()
        stubborn.wait()
        if stubborn.stdout is not None:
            stubborn.stdout.close()


# ------------------------------------------------------------ file modes


# Every path net init writes, relative to the network directory, and its mode.
EXPECTED_MODES = {
    ".": 0o755,
    "network.json": 0o644,
    "genesis.json": 0o644,
    "ca": 0o755,
    "ca/ca.pem": 0o644,
    "ca/ca.key": 0o600,
    "orgs": 0o700,
    "nodes": 0o755,
    **{f"orgs/{org_id}.key": 0o600 for org_id in ORGS},
    **{
        f"nodes/{name}/{leaf}": mode
        for name in ("v0", "v1", "o0")
        for leaf, mode in (
            ("", 0o700),
            ("config.json", 0o644),
            ("tls.pem", 0o644),
            ("tls.key", 0o600),
        )
    },
    "nodes/v0/node.key": 0o600,
    "nodes/v1/node.key": 0o600,
}


def test_init_sets_every_mode_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 000 a trust file left to the umask would be world-writable."""
    root = tmp_path / "net"
    previous = os.umask(0o000)
    try:
        init_network(root, 2, observers=1, base_port=17_800)
        # A forced re-init replaces existing files: their modes are set again.
        for path in root.rglob("*"):
            path.chmod(0o777)
        init_network(root, 2, observers=1, base_port=17_800, force=True)
    finally:
        os.umask(previous)
    written = {str(path.relative_to(root)): path.stat().st_mode & 0o777 for path in root.rglob("*")}
    written["."] = root.stat().st_mode & 0o777
    expected = {os.path.normpath(name): mode for name, mode in EXPECTED_MODES.items()}
    assert {name: oct(mode) for name, mode in written.items()} == {
        name: oct(mode) for name, mode in expected.items()
    }


def test_key_and_certificate_writers_replace_an_open_file_mode(tmp_path: Path) -> None:
    """Overwriting a world-readable key file leaves it 0600 (one writer for every key)."""
    key_path = tmp_path / "k.key"
    key_path.write_text("old")
    key_path.chmod(0o666)
    save_identity(key_path, Identity("leadfirm", Ed25519Signer.generate()))
    assert key_path.stat().st_mode & 0o777 == 0o600
    ca_cert, ca_key = make_ca(tmp_path / "ca")
    ca_key.chmod(0o666)
    ca_cert.chmod(0o666)
    make_ca(tmp_path / "ca")
    assert (ca_cert.stat().st_mode & 0o777, ca_key.stat().st_mode & 0o777) == (0o644, 0o600)
    assert not list(tmp_path.rglob("*.tmp"))

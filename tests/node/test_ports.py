"""Ports: tests listen outside the ephemeral range, and a node waits briefly for a held port.

A port inside the kernel's ephemeral range (``ip_local_port_range``) can be
taken at any moment as the source port of some outgoing connection, so a
test that restarts a node there can find its port in use.  And a node whose
port is held for a moment at start must wait ``limits.bind_retry_ms`` for
it instead of exiting, then fail with a message that names the port.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from netfixture import REPO, free_base_port

from node.catalog import DEFAULT_BASE_PORT
from node.config import load_node_config
from node.netinit import (
    MAX_VALIDATORS,
    ephemeral_port_range,
    ephemeral_ports,
    init_network,
    network_ports,
)

# Long enough for the retry to matter, short against the node's default retry time.
HELD_FOR_S = 0.8
START_TIMEOUT_S = 30


def test_test_networks_listen_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_port_range()
    for nodes in (1, 4, 9, 12):
        for _ in range(5):
            ports = network_ports(free_base_port(nodes), nodes)
            inside = [port for port in ports if low <= port <= high]
            assert inside == [], f"test ports {inside} are in the ephemeral range {low}-{high}"


def test_the_default_network_ports_are_outside_the_ephemeral_range() -> None:
    assert ephemeral_ports(DEFAULT_BASE_PORT, MAX_VALIDATORS) == []


def test_net_init_warns_when_ports_are_in_the_ephemeral_range(tmp_path: Path) -> None:
    low, high = ephemeral_port_range()
    if high - low < 200:
        pytest.skip(f"the ephemeral range {low}-{high} is too small to place a network in")
    init = ["net", "init", str(tmp_path / "net"), "--validators", "1", "--no-tls"]
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *init, "--base-port", str(low + 10)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ephemeral range" in result.stderr and "--base-port" in result.stderr


def _config(directory: Path, bind_retry_ms: int) -> Path:
    init_network(directory / "net", 1, tls=False, base_port=free_base_port(1))
    path = directory / "net" / "nodes" / "v0" / "config.json"
    document = json.loads(path.read_text())
    document["limits"] = {"bind_retry_ms": bind_retry_ms}
    path.write_text(json.dumps(document))
    return path


def _hold(port: int) -> socket.socket:
    """Listen on 127.0.0.1:port as another program would."""
    return socket.create_server(("127.0.0.1", port))


async def _healthy(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        return response.status == 200


def _run_node(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "node.cli", "node", "run", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.asyncio
async def test_a_node_whose_port_is_briefly_held_binds_once_it_is_freed(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, bind_retry_ms=20_000))
    holder = _hold(config.api_port)
    process = _run_node(config.path)
    try:
        await asyncio.sleep(HELD_FOR_S)
        # On the old code the node had already exited: address already in use.
        assert process.poll() is None, process.communicate()[0]
        holder.close()
        url = f"http://127.0.0.1:{config.api_port}"
        for _ in range(int(START_TIMEOUT_S / 0.2)):
            if process.poll() is not None:
                break
            try:
                if await _healthy(url):
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        assert await _healthy(url), "the node never served its API after the port was freed"
    finally:
        holder.close()
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "is in use; retrying" in output


def test_a_port_held_past_the_retry_time_fails_with_a_line_naming_it(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, bind_retry_ms=300))
    holder = _hold(config.api_port)
    process = _run_node(config.path)
    try:
        output = process.communicate(timeout=START_TIMEOUT_S)[0]
    finally:
        holder.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 2, output
    assert f"api port {config.api_port} on 127.0.0.1 is in use" in output
    assert "limits.bind_retry_ms" in output
    assert "Traceback" not in output

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
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from netfixture import REPO, free_base_port

from node.ops.catalog import DEFAULT_BASE_PORT
from node.ops.netinit import (
    MAX_VALIDATORS,
    ephemeral_port_range,
    ephemeral_ports,
    init_network,
    network_ports,
)
from node.runtime.config import load_node_config

pytestmark = pytest.mark.network

POLL_S = 0.1
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
        [sys.executable, "-m", "node.ops.cli", *init, "--base-port", str(low + 10)],
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
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _run_node(config: Path, log: Path | None = None) -> subprocess.Popen[str]:
    output = subprocess.PIPE if log is None else log.open("w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "node.ops.cli", "node", "run", "--config", str(config)],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        # The node writes to its own copy of the log file's descriptor.
        if not isinstance(output, int):
            output.close()


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    for _ in range(int(timeout_s / POLL_S)):
        if await condition():
            return True
        await asyncio.sleep(POLL_S)
    return await condition()


@pytest.mark.asyncio
async def test_a_node_whose_port_is_briefly_held_binds_once_it_is_freed(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, bind_retry_ms=60_000))
    log = tmp_path / "node.log"
    holder = _hold(config.api_port)
    process = _run_node(config.path, log)
    url = f"http://127.0.0.1:{config.api_port}"
    try:
        # The port is freed only once the node has found it in use (however
        # slowly the machine starts Python); on the old code the node exited
        # at that moment with "address already in use".
        async def retrying() -> bool:
            return process.poll() is not None or "is in use; retrying" in log.read_text()

        assert await _until(retrying, START_TIMEOUT_S), log.read_text()
        assert process.poll() is None, log.read_text()
        holder.close()

        async def served() -> bool:
            return process.poll() is not None or await _healthy(url)

        await _until(served, START_TIMEOUT_S)
        assert await _healthy(url), f"the node never served its API:\n{log.read_text()}"
    finally:
        holder.close()
        process.terminate()
        process.wait(timeout=30)


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

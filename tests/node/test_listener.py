"""Connections, timeouts, parser errors and peer handshakes of in-process nodes.

Hostile clients against the node's two ports, the way a review found them:
idle connections past the caps, connections that never finish a TLS
handshake or a request, malformed HTTP that aiohttp's parser refuses, and
peer-link handshakes held open while a real validator links.  Each test
runs the node on uvloop, the loop ``provenet node run`` uses (the cap test
also on the standard loop: connection accounting leans on loop internals).
Clients are told apart by their source address, 127.0.0.x; all traffic
stays on 127.0.0.0/8 and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from netfixture import free_base_port

import node.runtime.listener.memory as listener_memory
from consensus.codec import decode, encode
from contracts.tx import encode_tx, sign_tx
from node.app import RunningNode, start_node
from node.ops.netinit import init_network
from node.runtime.config import NodeConfig, NodeLimits, load_node_config
from node.runtime.listener.connections import ByAddress, ConnectionTable, PortLimits, address_key
from node.runtime.peers import PendingHandshake, PendingHandshakes, hello_bytes
from node.sdk.keys import load_identity
from node.sdk.tls import client_context

pytestmark = pytest.mark.network

CHAIN = "provenet-local"
LOOPS = ["uvloop", "asyncio"]
# Upper bound on any one wait for the node to act; the node acts in milliseconds.
WAIT_S = 10.0


def run(scenario: Callable[[], Coroutine[Any, Any, None]], loop: str = "uvloop") -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())


def make_network(
    tmp_path: Path,
    validators: int = 1,
    tls: bool = True,
    observers: int = 0,
    limits: dict[str, int] | None = None,
) -> Path:
    directory = tmp_path / "net"
    base = free_base_port(validators + observers)
    init_network(directory, validators, tls=tls, base_port=base, observers=observers)
    for config_path in (directory / "nodes").glob("*/config.json"):
        config = json.loads(config_path.read_text())
        config["limits"] = dict(limits or {})
        config_path.write_text(json.dumps(config))
    return directory


@contextlib.asynccontextmanager
async def running(directory: Path, name: str = "v0") -> AsyncIterator[RunningNode]:
    node = await start_node(load_node_config(directory / "nodes" / name / "config.json"))
    try:
        yield node
    finally:
        await node.stop()


def tls_client(directory: Path, cert_of: str | None = None) -> ssl.SSLContext:
    ca = directory / "ca" / "ca.pem"
    if cert_of is None:
        return client_context(ca)
    node_dir = directory / "nodes" / cert_of
    return client_context(ca, node_dir / "tls.pem", node_dir / "tls.key")


def connect_idle(port: int, source: str, count: int) -> list[socket.socket]:
    """``count`` TCP connections from ``source`` that send nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def closed_by_node(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def settle(sockets: list[socket.socket], expected_closed: int) -> int:
    """How many of ``sockets`` the node closed, once that reaches ``expected_closed`` or time is up.

    The node closes refused sockets as it accepts them; waiting a little
    longer after the count is reached shows it does not close more.
    """
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if sum(closed_by_node(sock) for sock in sockets) >= expected_closed:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    return sum(closed_by_node(sock) for sock in sockets)


async def get(
    url: str, context: ssl.SSLContext | None, source: str = "127.0.0.1"
) -> tuple[int, str]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.get(url, ssl=context if context is not None else False) as response,
    ):
        return response.status, await response.text()


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


# ---------------------------------------------------------------- item 9: caps


@pytest.mark.parametrize("loop", LOOPS)
def test_idle_connections_over_the_caps_are_closed_and_other_clients_are_served(
    tmp_path: Path, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Long timeouts: this test is about the caps, the next one about timeouts.
    limits = {
        "max_connections_per_address": 50,
        "max_connections_per_port": 90,
        "connection_idle_timeout_ms": 60_000,
        "tls_handshake_timeout_ms": 60_000,
    }
    directory = make_network(tmp_path, limits=limits)
    context = tls_client(directory)
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with running(directory) as node:
            port = node.config.api_port
            url = f"https://127.0.0.1:{port}"
            flood = connect_idle(port, "127.0.0.1", 120)
            assert await settle(flood, 70) == 70, "one address holds at most 50"
            # Another client is served meanwhile, on a fresh connection.
            assert (await get(f"{url}/healthz", context, "127.0.0.2"))[0] == 200
            second = connect_idle(port, "127.0.0.3", 60)
            assert await settle(second, 20) == 20, "the port holds at most 90"
            close_all(second)
            await asyncio.sleep(0.3)
            status, metrics = await get(f"{url}/metrics", context, "127.0.0.4")
            close_all(flood)
        assert status == 200
        assert 'provenet_connections_shed_total{port="api",reason="per_address"} 70.0' in metrics
        assert 'provenet_connections_shed_total{port="api",reason="per_port"} 20.0' in metrics
        shedding = [r for r in caplog.records if "shedding connections" in r.getMessage()]
        assert len(shedding) == 1 and shedding[0].levelno == logging.WARNING

    run(scenario, loop)


def test_strangers_filling_the_peer_port_never_lock_out_a_validator(tmp_path: Path) -> None:
    limits = {
        "max_connections_per_port": 20,
        "max_connections_per_address": 100,
        "tls_handshake_timeout_ms": 60_000,
    }
    directory = make_network(tmp_path, validators=4, limits=limits)

    async def scenario() -> None:
        async with running(directory) as node, aiohttp.ClientSession() as http:
            port = node.config.peer_port
            strangers = connect_idle(port, "127.0.0.2", 40)
            # Full port: each newcomer evicted the oldest stranger.
            assert await settle(strangers, 20) == 20
            ws = await link_as_validator(http, directory, 1, port, tls_client(directory, "v1"))
            more = connect_idle(port, "127.0.0.3", 40)
            # 80 strangers, 20 places: the validator's link took none of them.
            assert await settle(strangers + more, 60) == 60
            with contextlib.suppress(TimeoutError):
                message = await ws.receive(timeout=0.5)
                assert message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert not ws.closed
            await ws.close()
            close_all(strangers + more)

    run(scenario)


async def link_as_validator(
    http: aiohttp.ClientSession,
    directory: Path,
    replica_id: int,
    port: int,
    context: ssl.SSLContext | None,
) -> aiohttp.ClientWebSocketResponse:
    """Dial validator 0's peer port as validator ``replica_id`` and pass the handshake."""
    scheme = "wss" if context is not None else "ws"
    ws = await http.ws_connect(
        f"{scheme}://127.0.0.1:{port}/peer", ssl=context if context is not None else False
    )
    challenge = decode((await ws.receive(timeout=WAIT_S)).data)
    assert isinstance(challenge, dict)
    signer = load_identity(directory / "nodes" / f"v{replica_id}" / "node.key").signer
    signature = signer.sign(hello_bytes(CHAIN, challenge["challenge"], replica_id, 0))
    await ws.send_bytes(encode({"replica_id": replica_id, "signature": signature}))
    return ws


# ---------------------------------------------------------------- item 9: timeouts


def test_idle_slow_and_half_open_connections_are_closed_after_the_timeouts(
    tmp_path: Path,
) -> None:
    limits = {"connection_idle_timeout_ms": 400, "tls_handshake_timeout_ms": 400}
    directory = make_network(tmp_path, limits=limits)
    context = tls_client(directory)

    async def scenario() -> None:
        async with running(directory) as node, aiohttp.ClientSession() as http:
            port = node.config.api_port
            outcomes = await asyncio.gather(
                no_tls_handshake(port),
                tls_then_silence(port, context),
                slowloris(port, context),
                one_request_then_idle(port, context),
                event_stream_stays(http, port, context),
            )
        assert list(outcomes) == [
            "closed: no TLS handshake",
            "closed: no request",
            "closed: request never completed",
            "closed: idle after a response",
            "open: event stream in flight",
        ]

    run(scenario)


async def no_tls_handshake(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
    return "closed: no TLS handshake" if data == b"" else f"answered {data[:40]!r}"


async def tls_then_silence(port: int, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        data = await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
    return "closed: no request" if data == b"" else f"answered {data[:40]!r}"


async def slowloris(port: int, context: ssl.SSLContext) -> str:
    """Headers trickled in one line every 100 ms, never finished."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        for line in range(int(WAIT_S / 0.1)):
            await asyncio.sleep(0.1)
            if reader.at_eof():
                return "closed: request never completed"
            writer.write(b"X-Slow-%d: y\r\n" % line)
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.01) == b"":
                    return "closed: request never completed"
    except (ConnectionError, ssl.SSLError):
        return "closed: request never completed"
    finally:
        writer.close()
    return "open after all its header lines"


async def one_request_then_idle(port: int, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
    answered = data.startswith(b"HTTP/1.1 200")
    return "closed: idle after a response" if answered else f"answered {data[:40]!r}"


async def event_stream_stays(
    http: aiohttp.ClientSession, port: int, context: ssl.SSLContext
) -> str:
    async with http.ws_connect(f"wss://127.0.0.1:{port}/v1/events", ssl=context) as ws:
        # Three idle timeouts: a request in flight is never idle.
        with contextlib.suppress(TimeoutError):
            message = await ws.receive(timeout=1.2)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return "closed: event stream"
        return "open: event stream in flight"


# ---------------------------------------------------------------- item 10: memory


def test_freed_heap_is_returned_after_a_burst_of_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []

    def malloc_trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(listener_memory, "_load_malloc_trim", lambda: malloc_trim)
    monkeypatch.setattr(listener_memory, "TRIM_AFTER_CLOSED", 50)
    monkeypatch.setattr(listener_memory, "TRIM_DELAY_S", 0.1)
    directory = make_network(tmp_path)

    async def scenario() -> None:
        async with running(directory) as node:
            burst = connect_idle(node.config.api_port, "127.0.0.2", 60)
            await asyncio.sleep(0.3)
            close_all(burst)
            deadline = time.monotonic() + WAIT_S
            while not trims and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        assert trims == [0]

    run(scenario)


def test_the_node_raises_its_open_file_limit_to_the_hard_limit() -> None:
    script = (
        "import resource, node.runtime.listener.site as l\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "print(l.raise_file_limit(), hard)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    raised, hard = result.stdout.split()
    assert raised == hard or int(hard) < 0


def test_the_port_caps_shrink_to_fit_a_small_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open-file limit here ({hard}) is below the 1,024 this test sets")
    script = (
        "import resource, node.runtime.listener.site as l, node.runtime.config as c\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
        "print(l.connections_per_port(c.NodeLimits(), validators=4))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    # (1,024 - 256 reserved - 4 validators x 4 links) // 2 ports
    assert int(result.stdout) == 376


# ---------------------------------------------------------------- item 7: parser errors

_HOST = b"Host: node\r\n"
MALFORMED_REQUESTS = {
    "line over 8,190 bytes": b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\n" + _HOST + b"\r\n",
    "2,000 headers": b"GET /healthz HTTP/1.1\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(2_000))
    + b"\r\n",
    "Content-Length with chunked": b"POST /v1/txs HTTP/1.1\r\n"
    + _HOST
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST /v1/txs HTTP/1.1\r\n"
    + _HOST
    + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "negative length": b"POST /v1/txs HTTP/1.1\r\n" + _HOST + b"Content-Length: -1\r\n\r\n",
    "HTTP/9.9": b"GET /healthz HTTP/9.9\r\n" + _HOST + b"\r\n",
    "bare LF": b"GET /healthz HTTP/1.1\nHost: node\n\n",
    "unknown method": b"FOO /healthz HTTP/1.1\r\n" + _HOST + b"\r\n",
    "raw 0xff in the path": b"GET /\xff HTTP/1.1\r\n" + _HOST + b"\r\n",
}


# A chunked body whose framing breaks after the handler started reading it
# (aiohttp's C parser used to leave that request hanging for good).
BODY_FRAMING_ERROR = (
    b"POST /v1/txs HTTP/1.1\r\n"
    + _HOST
    + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"zz\r\nhello\r\n0\r\n\r\n",
)


async def raw_exchange(
    port: int, context: ssl.SSLContext, request: bytes, later: bytes = b""
) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(request)
        if later:
            await asyncio.sleep(0.2)
            writer.write(later)
        return await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()


def test_malformed_http_answers_json_with_a_code_and_logs_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = make_network(tmp_path, validators=2)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with running(directory) as node:
            ports = {"api": (node.config.api_port, tls_client(directory))}
            ports["peer"] = (node.config.peer_port, tls_client(directory, "v1"))
            for name, request in MALFORMED_REQUESTS.items():
                for port_name, (port, context) in ports.items():
                    raw = await raw_exchange(port, context, request)
                    check_malformed_http_answer(raw, f"{name} on the {port_name} port")
            port, context = ports["api"]
            raw = await raw_exchange(port, context, *BODY_FRAMING_ERROR)
            check_malformed_http_answer(raw, "a chunk size that is not hex, after the headers")

    run(scenario)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r for r in caplog.records if r.exc_info] == []
    lines = [r for r in caplog.records if "malformed HTTP" in r.getMessage()]
    # Rate-limited: one line per port, the rest counted.
    assert 1 <= len(lines) <= 2 and all(r.levelno == logging.INFO for r in lines)


def check_malformed_http_answer(raw: bytes, what: str) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert re.fullmatch(r"HTTP/1\.[01] 400 .*", status_line), (what, status_line)
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert headers["Content-Type"].startswith("application/json"), (what, headers)
    assert headers["Server"] == "provenet", (what, headers)
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_http", (what, error)
    assert error["message"].startswith("malformed HTTP request"), (what, error)


# ---------------------------------------------------------------- item 8: handshakes


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "no-tls"])
def test_a_validator_links_and_commits_while_others_hold_handshakes_open(
    tmp_path: Path, tls: bool
) -> None:
    directory = make_network(tmp_path, validators=4, observers=1, tls=tls)

    async def scenario() -> None:
        nodes = [await start_node(config_of(directory, f"v{i}")) for i in range(3)]
        stop = asyncio.Event()
        holders = [
            asyncio.create_task(hold(stop, directory, node.config.peer_port, tls, kind, source))
            for node in nodes
            for kind, source in holder_plan(tls)
        ]
        late = None
        try:
            await asyncio.sleep(0.5)  # the holders are in place
            late = await start_node(config_of(directory, "v3"))
            peers = late.peers
            assert peers is not None
            await wait_for(lambda: all(p["connected"] for p in peers.status().values()))
            receipt = await submit_to(directory, late, tls)
            assert receipt["status"] == "committed", receipt
            assert receipt["receipt"]["status"] == "ok", receipt
        finally:
            stop.set()
            await asyncio.gather(*holders, return_exceptions=True)
            await asyncio.gather(*(n.stop() for n in [*nodes, *([late] if late else [])]))

    run(scenario)


def config_of(directory: Path, name: str) -> NodeConfig:
    return load_node_config(directory / "nodes" / name / "config.json")


def holder_plan(tls: bool) -> list[tuple[str, str]]:
    """Who holds handshakes open at each validator, and from where."""
    if tls:
        # The observer's certificate (a member of the network, not a
        # validator) from the validators' own address, and bare TCP.
        return [("observer-cert", "127.0.0.1")] * 6 + [("tcp", "127.0.0.1")] * 6
    # Without TLS nobody is known before the hello: strangers on other hosts.
    return [("websocket", "127.0.0.2")] * 6 + [("websocket", "127.0.0.3")] * 6


async def hold(
    stop: asyncio.Event, directory: Path, port: int, tls: bool, kind: str, source: str
) -> None:
    """Hold one pending handshake open, and open another whenever the node closes it."""
    while not stop.is_set():
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError):
            if kind == "tcp":
                await hold_tcp(stop, port, source)
            else:
                await hold_websocket(stop, directory, port, tls, source)
        await asyncio.sleep(0.05)


async def hold_tcp(stop: asyncio.Event, port: int, source: str) -> None:
    """A TCP connection that never starts its TLS handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    return
    finally:
        writer.close()


async def hold_websocket(
    stop: asyncio.Event, directory: Path, port: int, tls: bool, source: str
) -> None:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    scheme = "wss" if tls else "ws"
    context: ssl.SSLContext | bool = tls_client(directory, "o0") if tls else False
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.ws_connect(f"{scheme}://127.0.0.1:{port}/peer", ssl=context) as ws,
    ):
        # Read the challenge, never answer, until the node closes the link.
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                message = await ws.receive(timeout=0.2)
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return


async def wait_for(condition: Callable[[], bool], timeout_s: float = WAIT_S * 2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def submit_to(directory: Path, node: RunningNode, tls: bool) -> dict[str, Any]:
    farm = load_identity(directory / "orgs" / "farm.key").signer
    tx = sign_tx(
        farm,
        chain_id=CHAIN,
        nonce=0,
        contract="food",
        method="harvest",
        args={"lot_id": "LATE-1", "product": "wheat", "mass_grams": 1_000},
    )
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{node.config.api_port}/v1/txs?wait=true&timeout_ms=15000"
    headers = {"Content-Type": "application/msgpack"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url, data=encode_tx(tx), headers=headers, ssl=tls_client(directory) if tls else False
        ) as response,
    ):
        return dict(await response.json())


# ---------------------------------------------------------------- bookkeeping


def _limits(per_port: int = 3, per_address: int = 2, evict: bool = False) -> PortLimits:
    return PortLimits(
        max_connections=per_port,
        max_per_address=per_address,
        max_per_identity=2,
        evict_when_full=evict,
        trusted_names=frozenset({"v1"}),
    )


def test_the_api_port_table_refuses_per_address_then_per_port() -> None:
    table: ConnectionTable[str] = ConnectionTable(_limits())
    assert table.admit("a1", "A").refused is None
    assert table.admit("a2", "A").refused is None
    assert table.admit("a3", "A").refused == "per_address"
    assert table.admit("b1", "B").refused is None
    assert table.admit("c1", "C").refused == "per_port"
    assert table.release("a1") and not table.release("a1")
    assert table.admit("c1", "C").refused is None
    assert len(table) == 3


def test_the_peer_port_table_evicts_the_oldest_stranger_and_never_a_validator() -> None:
    table: ConnectionTable[str] = ConnectionTable(_limits(evict=True))
    for key, address in (("s1", "A"), ("v", "B"), ("s2", "C")):
        assert table.admit(key, address).refused is None
    assert table.identify("v", "v1") == ()
    # The validator's link left the stranger pool: two strangers, room for one.
    assert table.admit("s3", "D").evicted == ()
    assert table.admit("s4", "E").evicted == ("s1",)
    assert table.admit("s5", "F").evicted == ("s2",)
    assert "v" in table and len(table) == 4
    # The same validator's third link replaces its oldest.
    for key in ("v2", "v3"):
        table.admit(key, "B")
    assert table.identify("v2", "v1") == ()
    assert table.identify("v3", "v1") == ("v",)


def test_the_victim_is_the_oldest_of_the_address_holding_the_most() -> None:
    table: ByAddress[str] = ByAddress()
    table.add("b1", "B")
    for key in ("a1", "a2", "a3"):
        table.add(key, "A")
    assert table.victim() == "a1"
    table.remove("a1")
    table.remove("a2")
    assert table.victim() == "b1"
    assert table.remove("b1") and not table.remove("b1")
    assert table.victim() == "a3" and len(table) == 1


def test_pending_handshakes_are_bounded_per_identity_and_address_and_evict_strangers() -> None:
    closed: list[str] = []

    def entry(name: str, address: str, identity: str | None) -> PendingHandshake:
        validator = identity == "v1"
        return PendingHandshake(address, identity, validator, close=lambda: closed.append(name))

    pending = PendingHandshakes(max_strangers=3, per_identity=2, per_address=2)
    o0a, o0b = entry("o0a", "127.0.0.1", "o0"), entry("o0b", "127.0.0.1", "o0")
    assert pending.admit(o0a) is None and pending.admit(o0b) is None
    assert pending.admit(entry("o0c", "127.0.0.1", "o0")) == "handshakes_per_identity"
    # A validator's certificate: neither its address nor the stranger table count.
    v1a, v1b = entry("v1a", "127.0.0.1", "v1"), entry("v1b", "127.0.0.1", "v1")
    assert pending.admit(v1a) is None and pending.admit(v1b) is None
    assert pending.admit(entry("s1", "10.0.0.1", None)) is None
    # Full: the address holding the most (127.0.0.1, two) gives up its oldest.
    assert pending.admit(entry("s2", "10.0.0.1", None)) is None
    assert closed == ["o0a"] and o0a.evicted
    assert pending.admit(entry("s3", "10.0.0.1", None)) == "handshakes_per_address"
    assert pending.admit(entry("t", "10.0.0.2", None)) is None
    assert closed == ["o0a", "s1"]
    pending.done(o0a)
    pending.done(v1a)
    pending.done(v1a)
    assert len(pending) == 4


def test_address_key_groups_an_ipv6_client_by_its_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key(None) == "unknown"


def test_default_limits_are_consistent() -> None:
    limits = NodeLimits()
    assert limits.max_connections_per_address <= limits.max_connections_per_port
    assert limits.peer_handshake_timeout_ms <= 2_000

"""One HTTP client in node/: the SDK transport (node/sdk/transport.py), enforced.

Why a test: every hand-made request re-decides timeouts, size caps, TLS,
connection limits and what a failure is, and the copies drift apart (issue
11).  Every module of node/ is read from the source, including code inside
functions, and none may open HTTP or websocket connections of its own:

* no aiohttp client machinery (``ClientSession``, ``aiohttp.request``,
  connectors) and no ``ws_connect``;
* no ``transport.session()``: borrowing the transport's session to send a
  request by hand skips ``Transport.fetch`` (its bounds and errors) as
  surely as a session of one's own;
* no other HTTP client: ``urllib.request``, ``http.client``, requests,
  httpx, urllib3, websockets.

The one exception besides the transport is the validators' peer links
(node/runtime/peers.py): a mutually authenticated websocket between
validators, not the client API.  Servers (node/runtime/listener/,
node/api/) need no exception: they use aiohttp's server side only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE = REPO / "node"

TRANSPORT = "node/sdk/transport.py"
# Modules allowed some client machinery, and exactly which.
ALLOWED: dict[str, frozenset[str]] = {
    TRANSPORT: frozenset({"*"}),
    "node/runtime/peers.py": frozenset({"ClientSession", "ws_connect"}),
}

# aiohttp names that make connections of their own.
AIOHTTP_CLIENT_NAMES = frozenset({"ClientSession", "request", "TCPConnector", "UnixConnector"})
# Methods that open a connection (on a session) or lend one (on a Transport).
CONNECTING_METHODS = frozenset({"ws_connect", "session"})
# Other HTTP or websocket clients, by module.
OTHER_CLIENTS = ("urllib.request", "http.client", "requests", "httpx", "urllib3", "websockets")


def _is_other_client(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in OTHER_CLIENTS)


def client_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every way ``tree`` makes HTTP connections itself."""
    aiohttp_names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "aiohttp":
                    aiohttp_names.add(alias.asname or "aiohttp")
                if _is_other_client(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _is_other_client(node.module) or _is_other_client(full):
                    yield node.lineno, f"from {node.module} import {alias.name}"
                elif node.module.split(".")[0] == "aiohttp" and alias.name in AIOHTTP_CLIENT_NAMES:
                    yield node.lineno, alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (
                isinstance(owner, ast.Name)
                and owner.id in aiohttp_names
                and node.attr in AIOHTTP_CLIENT_NAMES
            ):
                yield node.lineno, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CONNECTING_METHODS
        ):
            yield node.lineno, node.func.attr


def violations(path: Path) -> list[str]:
    relative = path.relative_to(REPO).as_posix()
    allowed = ALLOWED.get(relative, frozenset())
    if "*" in allowed:
        return []
    tree = ast.parse(path.read_text(), filename=relative)
    return [f"{relative}:{line}: {what}" for line, what in client_uses(tree) if what not in allowed]


def test_only_the_sdk_transport_opens_http_connections_in_node() -> None:
    found = [line for path in sorted(NODE.rglob("*.py")) for line in violations(path)]
    assert found == [], (
        "HTTP outside the SDK transport (use Transport.fetch/request/websocket "
        "from node/sdk/transport.py):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import aiohttp\nasync def f():\n    aiohttp.ClientSession()", "ClientSession"),
        ("import aiohttp as a\nx = a.request('GET', 'http://127.0.0.1')", "request"),
        ("from aiohttp import ClientSession", "ClientSession"),
        ("async def f(s):\n    await s.ws_connect('ws://127.0.0.1')", "ws_connect"),
        ("def f(t):\n    return t.session().get('http://127.0.0.1')", "session"),
        ("def f():\n    import urllib.request", "import urllib.request"),
        ("from urllib import request", "from urllib import request"),
        ("from http.client import HTTPConnection", "from http.client import HTTPConnection"),
        ("from http import client", "from http import client"),
    ],
)
def test_the_check_sees_each_way_of_making_a_request(source: str, what: str) -> None:
    assert [found for _, found in client_uses(ast.parse(source))] == [what]


@pytest.mark.parametrize(
    "source",
    [
        "from urllib.parse import quote",
        "import aiohttp\nerror = aiohttp.ClientError\nkind = aiohttp.WSMsgType.TEXT",
        "from aiohttp import web",
        "from http import HTTPStatus",
        "async def f(t):\n    return await t.fetch('http://127.0.0.1', 'GET', '/')",
    ],
)
def test_the_check_lets_parsing_errors_servers_and_the_transport_through(source: str) -> None:
    assert list(client_uses(ast.parse(source))) == []


def test_the_allowed_modules_exist_and_still_need_their_exception() -> None:
    for relative, allowed in ALLOWED.items():
        path = REPO / relative
        assert path.is_file(), relative
        if "*" not in allowed:
            used = {what for _, what in client_uses(ast.parse(path.read_text()))}
            assert used == allowed, f"{relative}: uses {sorted(used)}, allowed {sorted(allowed)}"

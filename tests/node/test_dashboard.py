"""The dashboard every node serves at ``/``, checked in a real browser.

The serving side (content types, no directory traversal, nothing fetched
from elsewhere) is checked over HTTP.  The page itself is loaded from a
running validator into headless Chromium, Debian's ``chromium`` driven
through Playwright with ``executable_path`` (no browser download): a
person's session, typing a stone's id and reading the graph, while the
regulator sanctions the stone's mine in the middle of it.  Screenshots of
the provenance graph go to ``$PROVENET_ARTIFACTS`` (default
``<repo>/test-output/``).

``scripts/test`` installs Playwright (the ``test`` extra) and, as root
with apt, Chromium; where either cannot be installed the browser test
skips and says which.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from netfixture import free_base_port

import node.api.dashboard as dashboard
from node.api.routes import error_middleware
from node.app import RunningNode, start_node
from node.ops import demo
from node.ops.netinit import init_network
from node.runtime.config import load_node_config
from node.sdk import ProvenetClient

pytestmark = [pytest.mark.asyncio, pytest.mark.network, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
RED = "rgb(209, 36, 47)"  # the failing link's stroke in style.css
TIMEOUT_MS = 10_000


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("PROVENET_ARTIFACTS", str(REPO / "test-output")))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


# ---------------------------------------------------------------- serving


@pytest_asyncio.fixture
async def files_client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[error_middleware(1)])
    app.add_routes(dashboard.routes())
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_page_and_its_files_are_served_with_their_types(
    files_client: TestClient[web.Request, web.Application],
) -> None:
    expected = {
        "/": "text/html",
        "/static/index.html": "text/html",
        "/static/app.js": "text/javascript",
        "/static/style.css": "text/css",
    }
    for path, content_type in expected.items():
        response = await files_client.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type, path
        assert response.charset == "utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert len(await response.read()) > 100
    page = await files_client.get("/")
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    head = await files_client.head("/static/app.js")
    assert head.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2f__init__.py",
        "/static/..%2F..%2Fapi.py",
        "/static/%2e%2e%2f__init__.py",
        "/static/../__init__.py",
        "/static/",
        "/static/missing.js",
        "/static/.hidden",
        "/static/%2fetc%2fpasswd",
    ],
)
async def test_only_the_dashboard_files_are_served(
    files_client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await files_client.get(path)
    assert response.status == 404
    body = await response.text()
    assert "import" not in body and "root:" not in body


async def test_the_page_fetches_nothing_from_elsewhere() -> None:
    files = dashboard.static_files()
    assert {"index.html", "app.js", "style.css"} <= set(files)
    allowed = {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    for name, path in files.items():
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"')]*", text))
        assert urls <= allowed, f"{name} refers to {urls - allowed}"
        assert "@import" not in text and "<iframe" not in text, name


# ---------------------------------------------------------------- in the browser


def _browser_or_skip() -> tuple[Any, str]:
    """Playwright's async API and the system Chromium, or a skip saying which is missing."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (scripts/test installs it with the test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (scripts/test installs Debian's chromium as root)")
    return async_playwright, chromium


class Network:
    def __init__(self, node: RunningNode, directory: Path) -> None:
        self.node = node
        self.dir = directory
        self.url = f"http://127.0.0.1:{node.config.api_port}"

    def client(self, org_id: str) -> ProvenetClient:
        return ProvenetClient.from_network_dir(self.dir, org_id=org_id)


async def _serves_page(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(url + "/") as response:
        return response.status == 200 and response.content_type == "text/html"


@pytest_asyncio.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    directory = tmp_path / "net"
    init_network(directory, 1, tls=False, base_port=free_base_port(1))
    config = load_node_config(directory / "nodes" / "v0" / "config.json")
    running = await start_node(config)
    assert await _serves_page(f"http://127.0.0.1:{config.api_port}"), "the node serves no dashboard"
    try:
        yield Network(running, directory)
    finally:
        await running.stop()


async def test_a_person_traces_stones_and_a_lot_on_the_dashboard(network: Network) -> None:
    async_playwright, chromium = _browser_or_skip()
    quiet = lambda line: None  # noqa: E731
    clean = await demo.diamonds(network.client, out=quiet)
    tainted = await demo.diamonds(network.client, out=quiet)
    food = await demo.food(network.client, out=quiet)
    stone = tainted["stone"]
    trace = tainted["trace"]
    assets = {node["asset_id"] for node in trace["nodes"]}
    parcel = next(node for node in trace["nodes"] if node["mine_id"])
    export = next(node for node in trace["nodes"] if node["kp_certificates"])
    async with network.client("leadfirm") as viewer:
        height = int((await viewer.status())["height"])

    out = artifacts_dir()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            await page.goto(network.url + "/")
            await page.wait_for_selector("body[data-ready=true]")

            # Network status and the live block list.
            assert await page.text_content("#status-chain") == "provenet-local"
            assert int(await page.get_attribute("#status-height", "data-height") or 0) >= height
            assert await page.locator("#validators tr[data-validator=v0][data-link=self]").count()
            await page.wait_for_selector(f"#blocks tr[data-height='{height}']")
            assert await page.get_attribute("#blocks", "data-source") == "websocket"
            assert re.fullmatch(r"[0-9.]+ tx/s", (await page.text_content("#throughput")) or "")

            # A clean stone: mine to shop, certificates as badges, nothing red.
            graph = await _search_stone(page, clean["stone"])
            assert graph["conflict_free"] == "true"
            assert graph["assets"] == {node["asset_id"] for node in clean["trace"]["nodes"]}
            assert graph["failing"] == [] and graph["failing_edges"] == []
            await page.locator("#asset-card").screenshot(
                path=str(out / "dashboard-graph-clean.png")
            )

            # The tainted stone, still clean, then its mine is sanctioned while the page is open.
            graph = await _search_stone(page, stone)
            assert graph["conflict_free"] == "true"
            async with network.client("regulator") as regulator:
                receipt = await regulator.submit(
                    "diamonds",
                    "sanction",
                    {"kind": "mine", "target": parcel["mine_id"], "reason": "conflict zone"},
                )
            row = page.locator(f"#blocks tr[data-height='{receipt['height']}']")
            await row.wait_for()
            assert "sanctioned" in (await row.text_content() or "")

            graph = await _search_stone(page, stone)
            assert graph["conflict_free"] == "false"
            assert graph["assets"] == assets
            assert graph["mines"] == [parcel["mine_id"]]
            assert graph["sale"] == 1
            assert graph["kp_badges"] == {export["asset_id"]: export["kp_certificates"]}
            assert graph["grading_badges"] == {stone: [trace["nodes"][0]["grading_report"]]}
            assert graph["failing"] == [parcel["asset_id"]]
            assert graph["failing_rules"] == ["mine_sanctioned"]
            assert (f"mine:{parcel['mine_id']}", parcel["asset_id"]) in graph["failing_edges"]
            assert graph["failing_stroke"] == RED
            assert await page.locator("#asset-failures li[data-rule=mine_sanctioned]").count()
            shot = out / "dashboard-graph.png"
            await page.locator("#asset-card").screenshot(path=str(shot))
            print(f"\ndashboard provenance graph screenshot: {shot}")

            # The audit views follow the chain: the sanction and its taint show up there too.
            await page.wait_for_selector("#audit-noncompliant:not([data-state=loading])")
            if await page.get_attribute("#audit-noncompliant", "data-state") != "unavailable":
                await page.wait_for_selector(f"#audit-noncompliant tr[data-asset-id='{stone}']")
                await page.wait_for_selector(
                    f"#sanctions-table tr[data-kind=mine][data-target='{parcel['mine_id']}']"
                    f" a[data-asset-id='{stone}']"
                )

            # The recall impact of the farm lot, as a tree of downstream lots.
            await page.fill("#lot-input", food["lot"])
            await page.press("#lot-input", "Enter")
            await page.wait_for_selector(
                f"#recall-result[data-state=ready][data-lot-id='{food['lot']}']"
            )
            rows = await page.eval_on_selector_all(
                "#recall-table tr[data-lot-id]",
                "rows => rows.map(r => [r.dataset.lotId, +r.dataset.depth])",
            )
            impact = food["impact"]
            assert rows == [[lot["lot_id"], lot["depth"]] for lot in impact["affected"]]
            holders = await page.eval_on_selector_all(
                "#recall-holders [data-holder]", "nodes => nodes.map(n => n.dataset.holder)"
            )
            assert holders == impact["holders"]

            # The audit views answer, or say plainly that this node has none.
            for view in ("audit-noncompliant", "audit-sanctions", "audit-activity"):
                await page.wait_for_selector(f"#{view}:not([data-state=loading])")
                assert await page.get_attribute(f"#{view}", "data-state") in {
                    "ready",
                    "unavailable",
                }
            await page.screenshot(path=str(out / "dashboard.png"), full_page=True)

            assert errors == []
            foreign = [url for url in requests if not url.startswith((network.url, "data:"))]
            assert foreign == [], f"the page fetched from elsewhere: {foreign}"

            await _without_websockets_with_audit_answers(browser, network, receipt["height"], stone)
        finally:
            await browser.close()


AUDIT_ANSWERS = {
    "noncompliant": {"assets": [{"asset_id": "S-x-1", "failures": [
        {"asset_id": "P-x", "rule": "mine_sanctioned", "detail": "origin mine M is sanctioned"}
    ]}], "truncated": False},
    "sanctions": {
        "sanctions": [{"kind": "mine", "target": "M", "reason": "conflict zone", "height": 7,
                       "tainted": ["P-x", "S-x-1"]}],
        "revocations": [{"kind": "kp_certificate", "id": "BW-KP-x", "org_id": "kp-bw",
                         "height": 9, "tainted": ["S-x-1"]}],
    },
    "activity": {"from": 1, "to": 9, "orgs": {"miner": {
        "txs": 3, "ok": 2, "rejected": 1, "methods": {"diamonds.extract": 3}
    }}},
}  # fmt: skip


async def _without_websockets_with_audit_answers(
    browser: Any, network: Network, height: int, stone: str
) -> None:
    """A browser without websockets polls for blocks; the audit views draw the
    shapes the audit routes answer with (served here by the test)."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    await page.add_init_script("delete window.WebSocket")

    async def answer(route: Any) -> None:
        name = route.request.url.split("/v1/audit/")[1].split("?")[0]
        await route.fulfill(json={"result": AUDIT_ANSWERS[name]})

    await page.route(re.compile(r".*/v1/audit/.*"), answer)
    # A link straight to a stone opens with its graph drawn.
    await page.goto(f"{network.url}/#asset={stone}")
    await page.wait_for_selector(f"#blocks[data-source=polling] tr[data-height='{height}']")
    await page.wait_for_selector("svg#provenance-graph g.asset-node.failing")
    await page.wait_for_selector("#audit-noncompliant tr[data-asset-id='S-x-1']")
    assert await page.locator("#sanctions-table tr[data-kind=mine][data-target=M]").count()
    assert await page.locator("#revocations-table a.asset-link[data-asset-id='S-x-1']").count()
    miner = page.locator("#activity-table tr[data-org=miner]")
    assert "diamonds.extract \N{MULTIPLICATION SIGN}3" in (await miner.text_content() or "")
    await page.close()


async def _search_stone(page: Any, asset_id: str) -> dict[str, Any]:
    """Type the id as a person would and read back what the graph shows."""
    await page.fill("#asset-input", asset_id)
    await page.press("#asset-input", "Enter")
    await page.wait_for_selector(f"#asset-result[data-state=ready][data-asset-id='{asset_id}']")
    await page.wait_for_selector(f"svg#provenance-graph g.asset-node[data-asset-id='{asset_id}']")
    state: dict[str, Any] = await page.evaluate(
        """() => {
          const graph = document.querySelector('svg#provenance-graph');
          const all = (selector) => [...graph.querySelectorAll(selector)];
          const badges = (kind) => {
            const out = {};
            for (const b of all('g.asset-node g.badge[data-badge-kind=' + kind + ']')) {
              const id = b.closest('g.asset-node').dataset.assetId;
              (out[id] = out[id] || []).push(b.dataset.certId);
            }
            return out;
          };
          const failingEdge = graph.querySelector('g.edge.failing path.edge-line');
          return {
            conflict_free: graph.dataset.conflictFree,
            assets: all('g.asset-node').map(n => n.dataset.assetId),
            mines: all('g.mine-node').map(n => n.dataset.mineId),
            sale: all('g.sale-node').length,
            kp_badges: badges('kp'),
            grading_badges: badges('grading'),
            failing: all('g.asset-node.failing').map(n => n.dataset.assetId),
            failing_rules: all('g.asset-node.failing').map(n => n.dataset.rules),
            failing_edges: all('g.edge.failing').map(e => [e.dataset.from, e.dataset.to]),
            failing_stroke: failingEdge ? getComputedStyle(failingEdge).stroke : null,
          };
        }"""
    )
    state["assets"] = set(state["assets"])
    state["failing_edges"] = [tuple(edge) for edge in state["failing_edges"]]
    return state

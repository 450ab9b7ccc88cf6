"""End-to-end scenarios through the SDK against a running network.

``diamonds``: a parcel from a Botswana mine to a US retailer under the
Kimberley Process (register mine, extract, split, KP certificate, ship,
import confirmation, cut, custody to the grading lab, grade, transfer to
the lead firm, sale), then the stone's provenance trace and compliance.

``food``: wheat from a farm through three levels of processing at a mill,
a food-safety certificate, shipment to a grocer, then a recall at the farm
lot: the recall impact lists every downstream lot and who holds it, and a
shipment of a recalled product is refused on chain.

Every participant signs with its own key (one client per organisation from
``client_factory(org_id)``), and every step is printed as it commits with
its block height.  Asset ids carry a per-run token so a demo can run any
number of times against the same network.

Example::

    await diamonds(lambda org: ProvenetClient.from_network_dir("net", org_id=org))
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from node.sdk.client import ProvenetClient
from node.sdk.errors import TransactionRejected
from node.sdk.render import format_recall, format_trace

JSON = dict[str, Any]
ClientFactory = Callable[[str], ProvenetClient]
Output = Callable[[str], object]

KG = 1_000  # grams
# Certificates in the demos stay valid for this many blocks after the start.
VALIDITY_BLOCKS = 100_000


class Cast:
    """One SDK client per organisation, opened on first use and closed together."""

    def __init__(self, factory: ClientFactory, out: Output) -> None:
        self._factory = factory
        self._clients: dict[str, ProvenetClient] = {}
        self.out = out

    def client(self, org_id: str) -> ProvenetClient:
        if org_id not in self._clients:
            self._clients[org_id] = self._factory(org_id)
        return self._clients[org_id]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def step(
        self, org_id: str, contract: str, method: str, args: JSON, note: str = ""
    ) -> JSON:
        """Submit one transaction as ``org_id``, wait for its verified commit, print it."""
        try:
            receipt = await self.client(org_id).submit(contract, method, args)
        except TransactionRejected as refusal:
            self._line(refusal.result, org_id, f"{contract}.{method}", f"REFUSED {refusal.code}")
            raise
        self._line(receipt, org_id, f"{contract}.{method}", note)
        return receipt

    def _line(self, receipt: JSON, org_id: str, call: str, note: str) -> None:
        self.out(f"  block {receipt['height']:>6}  {org_id:<10} {call:<30} {note}")

    async def refused_step(
        self, org_id: str, contract: str, method: str, args: JSON, note: str = ""
    ) -> JSON:
        """Like :meth:`step` for a transaction the contract is expected to refuse."""
        try:
            receipt = await self.client(org_id).submit(contract, method, args)
        except TransactionRejected as refusal:
            receipt = refusal.result
            verdict = f"REFUSED {refusal.code}: {refusal.message}"
        else:
            verdict = "accepted (expected a refusal)"
        self._line(receipt, org_id, f"{contract}.{method}", f"{note} -> {verdict}")
        return receipt

    async def start(self, title: str, org_id: str) -> tuple[str, int]:
        """Print the title and the network's state; return a run token and the height."""
        status = await self.client(org_id).status()
        token = secrets.token_hex(3)
        self.out(
            f"{title} (run {token}) on chain {status.get('chain_id')}, "
            f"node {status.get('node')} at height {status.get('height')}"
        )
        return token, int(status.get("height", 0))


async def diamonds(client_factory: ClientFactory, out: Output = print) -> JSON:
    """Mine to retail under the Kimberley Process; returns the stone's trace and verdict."""
    cast = Cast(client_factory, out)
    try:
        return await _diamonds(cast)
    finally:
        await cast.close()


async def _diamonds(cast: Cast) -> JSON:
    token, height = await cast.start("Diamond chain: Botswana mine to US retail", "kp-bw")
    ids = _diamond_ids(token)
    await _mine_to_export(cast, ids, height + VALIDITY_BLOCKS)
    await _cutting(cast, ids)
    stone = ids["stones"][0]
    await _grading_and_sale(cast, ids, stone, report_id=f"GR-{token}-1")
    viewer = cast.client("leadfirm")
    trace = await viewer.trace(stone)
    compliance = await viewer.compliance(stone)
    cast.out("")
    cast.out(format_trace(trace, compliance))
    return {"stone": stone, "trace": trace, "compliance": compliance}


def _diamond_ids(token: str) -> dict[str, Any]:
    return {
        "mine": f"MINE-{token}",
        "parcel": f"P-{token}",
        "export": f"P-{token}-a",
        "kept": f"P-{token}-b",
        "cert": f"BW-KP-{token}",  # KPCS: numbered from the origin country
        "stones": [f"S-{token}-{n}" for n in range(1, 4)],
    }


async def _mine_to_export(cast: Cast, ids: dict[str, Any], expiry_height: int) -> None:
    parcel, export = ids["parcel"], ids["export"]
    await cast.step(
        "kp-bw", "diamonds", "register_mine",
        {"mine_id": ids["mine"], "country": "BW", "operator": "miner"},
        f"mine {ids['mine']} operated by miner",
    )  # fmt: skip
    await cast.step(
        "miner", "diamonds", "extract",
        {"mine_id": ids["mine"], "parcel_id": parcel, "carats_points": 20_000},
        f"rough parcel {parcel}, 200.00 ct",
    )  # fmt: skip
    await cast.step(
        "miner", "diamonds", "split",
        {
            "asset_id": parcel,
            "outputs": [
                {"asset_id": export, "carats_points": 12_000},
                {"asset_id": ids["kept"], "carats_points": 8_000},
            ],
        },
        f"{parcel} -> {export} (120 ct) + {ids['kept']} (80 ct)",
    )  # fmt: skip
    await cast.step(
        "miner", "diamonds", "transfer", {"asset_id": export, "to_org": "bw-trader"},
        f"{export} sold to the exporter",
    )  # fmt: skip
    await cast.step(
        "kp-bw", "diamonds", "issue_kp_certificate",
        {
            "cert_id": ids["cert"], "exporter": "bw-trader", "importer": "cutter",
            "origin_country": "BW", "destination_country": "BE", "parcels": [export],
            "carats_points": 12_000, "value_cents": 5_000_000, "hs_code": "7102.31",
            "expiry_height": expiry_height,
        },
        f"KP certificate {ids['cert']} BW -> BE, HS 7102.31",
    )  # fmt: skip
    await cast.step(
        "bw-trader", "diamonds", "ship", {"cert_id": ids["cert"]}, f"{export} shipped to Antwerp"
    )
    await cast.step(
        "kp-be", "diamonds", "confirm_import", {"cert_id": ids["cert"], "carats_points": 12_000},
        "import confirmed by the Belgian KP authority",
    )  # fmt: skip


async def _cutting(cast: Cast, ids: dict[str, Any]) -> None:
    stones = ids["stones"]
    await cast.step(
        "cutter", "diamonds", "cut",
        {
            "asset_id": ids["export"],
            "stones": [{"asset_id": stone, "carats_points": 1_500} for stone in stones],
        },
        f"{ids['export']} cut into {', '.join(stones)} (15 ct each)",
    )  # fmt: skip


async def _grading_and_sale(cast: Cast, ids: dict[str, Any], stone: str, report_id: str) -> None:
    await cast.step(
        "cutter", "diamonds", "transfer",
        {"asset_id": stone, "to_org": "lab", "custody_only": True},
        f"{stone} handed to the lab (custody only)",
    )  # fmt: skip
    await cast.step(
        "lab", "diamonds", "grade",
        {
            "asset_id": stone, "report_id": report_id, "carats_points": 1_500,
            "colour": "E", "clarity": "VS1", "cut_grade": "Excellent",
        },
        f"grading report {report_id}: E VS1 Excellent",
    )  # fmt: skip
    await cast.step(
        "cutter", "diamonds", "transfer", {"asset_id": stone, "to_org": "leadfirm"},
        f"{stone} sold to the lead firm",
    )  # fmt: skip
    await cast.step(
        "leadfirm", "diamonds", "sell",
        {"asset_id": stone, "buyer_ref": f"customer-{ids['parcel']}", "price_cents": 1_250_000},
        f"{stone} sold at retail (compliance checked on chain)",
    )  # fmt: skip


async def food(client_factory: ClientFactory, out: Output = print) -> JSON:
    """Farm to grocer with a recall at the farm lot; returns the recall impact."""
    cast = Cast(client_factory, out)
    try:
        return await _food(cast)
    finally:
        await cast.close()


async def _food(cast: Cast) -> JSON:
    token, height = await cast.start("Food chain: farm to grocer, then a recall", "farm")
    lots = {name: f"{name}-{token}" for name in ("W1", "W2", "FLOUR", "BRAN", "DOUGH", "B1", "B2")}
    await _harvest_and_mill(cast, lots)
    await _bake_and_deliver(cast, lots, f"FS-{token}", height + VALIDITY_BLOCKS)
    await cast.step(
        "safety-lab", "food", "recall", {"lot_id": lots["W2"], "reason": "aflatoxin"},
        f"farm lot {lots['W2']} recalled: aflatoxin",
    )  # fmt: skip
    await cast.refused_step(
        "grocer", "food", "ship", {"lot_id": lots["B2"], "to_org": "mill"},
        f"return {lots['B2']} to the mill",
    )  # fmt: skip
    impact = await cast.client("grocer").recall_impact(lots["W2"])
    cast.out("")
    cast.out(format_recall(impact))
    return {"lot": lots["W2"], "impact": impact}


async def _harvest_and_mill(cast: Cast, lots: dict[str, str]) -> None:
    for name, mass_kg in (("W1", 1_000), ("W2", 500)):
        await cast.step(
            "farm", "food", "harvest",
            {"lot_id": lots[name], "product": "wheat", "mass_grams": mass_kg * KG},
            f"wheat lot {lots[name]}, {mass_kg} kg",
        )  # fmt: skip
        await cast.step(
            "farm", "food", "ship", {"lot_id": lots[name], "to_org": "mill"},
            f"{lots[name]} shipped to the mill",
        )  # fmt: skip
        await cast.step("mill", "food", "receive", {"lot_id": lots[name]}, f"{lots[name]} received")
    await _process(
        cast,
        [(lots["W1"], 600 * KG), (lots["W2"], 400 * KG)],
        [(lots["FLOUR"], "flour", 700 * KG), (lots["BRAN"], "bran", 200 * KG)],
        "level 1: milling",
    )
    await _process(
        cast, [(lots["FLOUR"], 500 * KG)], [(lots["DOUGH"], "dough", 480 * KG)], "level 2: dough"
    )
    await _process(
        cast,
        [(lots["DOUGH"], 480 * KG)],
        [(lots["B1"], "bread", 300 * KG), (lots["B2"], "bread", 150 * KG)],
        "level 3: baking",
    )


async def _process(
    cast: Cast, inputs: list[tuple[str, int]], outputs: list[tuple[str, str, int]], note: str
) -> None:
    args: JSON = {
        "inputs": [{"lot_id": lot, "mass_grams": grams} for lot, grams in inputs],
        "outputs": [
            {"lot_id": lot, "product": product, "mass_grams": grams}
            for lot, product, grams in outputs
        ],
    }
    made = ", ".join(lot for lot, _, _ in outputs)
    await cast.step("mill", "food", "process", args, f"{note} -> {made}")


async def _bake_and_deliver(
    cast: Cast, lots: dict[str, str], cert_id: str, expiry_height: int
) -> None:
    await cast.step(
        "safety-lab", "food", "certify",
        {"cert_id": cert_id, "lot_id": lots["B1"], "kind": "food_safety",
         "expiry_height": expiry_height},
        f"food-safety certificate {cert_id} for {lots['B1']}",
    )  # fmt: skip
    await cast.step(
        "mill", "food", "ship",
        {"lot_id": lots["B1"], "to_org": "grocer", "claims": ["food_safety"]},
        f"{lots['B1']} shipped to the grocer, claiming food_safety",
    )  # fmt: skip
    await cast.step(
        "mill", "food", "ship", {"lot_id": lots["B2"], "to_org": "grocer"},
        f"{lots['B2']} shipped to the grocer",
    )  # fmt: skip
    for name in ("B1", "B2"):
        await cast.step(
            "grocer", "food", "receive", {"lot_id": lots[name]}, f"{lots[name]} on the shelf"
        )


SCENARIOS = {"diamonds": diamonds, "food": food}

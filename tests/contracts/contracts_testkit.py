"""Shared fixtures for the contract tests: a genesis, signers and a world.

The world executes signed transactions one per block (unless told
otherwise) against a fresh MemoryState, tracks each signer's nonce, and
offers `reject`, which asserts an exact error code and that nothing but
the sender's nonce changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapshot_root import pairs, root_from_snapshot

from consensus.codec import Ed25519Signer, decode
from contracts.config import ContractLimits
from contracts.genesis import Genesis, GenesisOrg, genesis_state
from contracts.orgs import nonce_key
from contracts.queries import query
from contracts.receipt import BlockContext, Receipt
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction, sign_tx

CHAIN_ID = "provenet-test"

# org_id: (country, roles, scopes)
ORGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "kp-bw": ("BW", ("certifier",), ("kp_authority",)),
    "kp-be": ("BE", ("certifier",), ("kp_authority",)),
    "kp-zz": ("ZZ", ("certifier",), ("kp_authority",)),
    "debswana": ("BW", ("supplier",), ()),
    "bw-trader": ("BW", ("manufacturer", "trader"), ()),
    "antwerp": ("BE", ("trader", "manufacturer"), ()),
    "cutter": ("BE", ("manufacturer",), ()),
    "gia": ("US", ("certifier",), ("grading_lab",)),
    "jeweller": ("US", ("retailer",), ()),
    "rogue": ("ZZ", ("trader",), ()),
    "regulator": ("CH", ("regulator",), ()),
    "farm": ("US", ("supplier",), ()),
    "farm2": ("MX", ("supplier",), ()),
    "mill": ("US", ("manufacturer",), ()),
    "bakery": ("US", ("manufacturer",), ()),
    "grocer": ("US", ("retailer",), ()),
    "organic-cert": ("US", ("certifier",), ("organic",)),
    "safety-lab": ("US", ("certifier",), ("food_safety",)),
}
KP_PARTICIPANTS = ("BE", "BW", "IN", "US")


def signer_for(name: str, index: int = 0) -> Ed25519Signer:
    seed = (name + "#" + str(index)).encode().ljust(32, b".")[:32]
    return Ed25519Signer.from_seed(seed)


def make_genesis(
    limits: ContractLimits | None = None,
    orgs: Mapping[str, tuple[str, tuple[str, ...], tuple[str, ...]]] | None = None,
) -> Genesis:
    members = tuple(
        GenesisOrg(org_id, org_id.upper(), country, roles, (signer_for(org_id).public_key,), scopes)
        for org_id, (country, roles, scopes) in sorted((orgs or ORGS).items())
    )
    return Genesis(
        chain_id=CHAIN_ID,
        organisations=members,
        kp_participants=KP_PARTICIPANTS,
        limits=limits or ContractLimits(),
    )


@dataclass
class World:
    genesis: Genesis = field(default_factory=make_genesis)
    state: MemoryState = field(init=False)
    height: int = 1
    signers: dict[str, Ed25519Signer] = field(default_factory=dict)
    log: list[tuple[Transaction, BlockContext]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = MemoryState(genesis_state(self.genesis))

    def signer(self, org: str) -> Ed25519Signer:
        return self.signers.get(org) or signer_for(org)

    def nonce(self, org: str) -> int:
        raw = self.state.get(nonce_key(self.signer(org).public_key))
        if raw is None:
            return 0
        nonce = decode(raw)
        assert isinstance(nonce, int)
        return nonce

    def block(self) -> BlockContext:
        return BlockContext(
            height=self.height, time_ms=1_700_000_000_000 + self.height * 1000, proposer="v0"
        )

    def send(
        self, org: str, contract: str, method: str, args: Mapping[str, object], **overrides: Any
    ) -> Receipt:
        signer = self.signer(org)
        tx = sign_tx(
            signer,
            chain_id=str(overrides.get("chain_id", CHAIN_ID)),
            nonce=int(overrides.get("nonce", self.nonce(org))),
            contract=contract,
            method=method,
            args=dict(args),
            expiry_height=overrides.get("expiry_height"),
        )
        block = self.block()
        self.log.append((tx, block))
        receipt = execute(self.state, tx, block)
        self.height += 1
        return receipt

    def ok(self, org: str, contract: str, method: str, args: Mapping[str, object]) -> Receipt:
        receipt = self.send(org, contract, method, args)
        assert receipt.ok, (
            f"{contract}.{method} by {org} rejected: {receipt.error} {receipt.message}"
        )
        return receipt

    def reject(
        self,
        org: str,
        contract: str,
        method: str,
        args: Mapping[str, object],
        code: str,
        **overrides: Any,
    ) -> Receipt:
        """Assert rejection with ``code`` and that only the nonce moved."""
        before = dict(pairs(self.state))
        root_before = self.state.root()
        admitted_nonce = self.nonce(org)
        receipt = self.send(org, contract, method, args, **overrides)
        assert not receipt.ok
        assert receipt.error == code, f"expected {code}, got {receipt.error}: {receipt.message}"
        assert receipt.events == ()
        after = dict(pairs(self.state))
        key = nonce_key(self.signer(org).public_key)
        after_without_nonce = {k: v for k, v in after.items() if k != key}
        before_without_nonce = {k: v for k, v in before.items() if k != key}
        assert after_without_nonce == before_without_nonce, "a rejected transaction changed state"
        admission = code in {
            "too_large",
            "wrong_chain",
            "expired",
            "unknown_key",
            "key_revoked",
            "bad_nonce",
            "bad_signature",
        }
        if admission:
            assert after == before and self.state.root() == root_before
        else:
            assert self.nonce(org) == admitted_nonce + 1
        assert self.state.root() == root_from_snapshot(after.items())
        return receipt

    def query(self, contract: str, name: str, args: Mapping[str, object]) -> dict[str, Any]:
        answer = query(self.state, contract, name, dict(args))
        assert answer["ok"], answer
        result = answer["result"]
        assert isinstance(result, dict)
        return result


# --- diamond scenario helpers ----------------------------------------------


def mine_and_extract(
    world: World, parcel: str = "P1", carats_points: int = 10_000, mine: str = "M1"
) -> None:
    if world.state.get(b"d/mine/" + mine.encode()) is None:
        world.ok(
            "kp-bw",
            "diamonds",
            "register_mine",
            {"mine_id": mine, "country": "BW", "operator": "debswana"},
        )
    world.ok(
        "debswana",
        "diamonds",
        "extract",
        {"mine_id": mine, "parcel_id": parcel, "carats_points": carats_points},
    )


def kp_args(
    cert: str, parcels: list[str], carats_points: int, **extra: object
) -> dict[str, object]:
    args: dict[str, object] = {
        "cert_id": cert,
        "exporter": "debswana",
        "importer": "antwerp",
        "origin_country": "BW",
        "destination_country": "BE",
        "parcels": parcels,
        "hs_code": "7102.31",
        "carats_points": carats_points,
        "value_cents": 125_000_00,
        "expiry_height": world_expiry(),
    }
    args.update(extra)
    return args


def world_expiry() -> int:
    return 10_000


def export_to_belgium(
    world: World, parcel: str = "P1", carats_points: int = 10_000, cert: str = "BW-0001"
) -> None:
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args(cert, [parcel], carats_points))
    world.ok("debswana", "diamonds", "ship", {"cert_id": cert})
    world.ok(
        "kp-be", "diamonds", "confirm_import", {"cert_id": cert, "carats_points": carats_points}
    )


def stones(*pairs: tuple[str, int]) -> list[dict[str, object]]:
    return [{"asset_id": asset_id, "carats_points": points} for asset_id, points in pairs]


def hand_to_lab(world: World, owner: str, stone: str, lab: str = "gia") -> None:
    """The owner keeps the stone but lets the lab hold it for grading."""
    world.ok(
        owner, "diamonds", "transfer", {"asset_id": stone, "to_org": lab, "custody_only": True}
    )


def cut_and_grade(world: World, rough: str = "P1", owner: str = "antwerp") -> None:
    world.ok(
        owner,
        "diamonds",
        "cut",
        {"asset_id": rough, "stones": stones(("S1", 2_000), ("S2", 1_500))},
    )
    hand_to_lab(world, owner, "S1")
    world.ok("gia", "diamonds", "grade", grading("S1", "R-S1", 2_000))


def grading(stone: str, report: str, carats_points: int) -> dict[str, object]:
    return {
        "asset_id": stone,
        "report_id": report,
        "carats_points": carats_points,
        "colour": "D",
        "clarity": "VVS1",
        "cut_grade": "Excellent",
    }

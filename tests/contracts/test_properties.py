"""Property tests: determinism, conservation of mass, taint propagation.

A random program of diamond and food operations (valid and invalid mixed:
picks may name consumed, foreign or missing assets, and some transactions
carry a wrong nonce or chain) runs on one world; its signed transactions
are then replayed on a fresh state, which must give byte-identical
receipts and state roots.
"""

from __future__ import annotations

from typing import Any

import pytest
from contracts_testkit import World, kp_args, make_genesis, stones
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshot_root import pairs, root_from_snapshot

from contracts.genesis import genesis_state
from contracts.queries import query
from contracts.runtime import execute
from contracts.state import MemoryState

# Explicit settings rather than a loaded profile: loading a profile is
# global and would change the other suites' hypothesis settings.
PROGRAM_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

DIAMOND_HOLDERS = ("debswana", "bw-trader", "antwerp", "cutter")
op = st.tuples(
    # Repeats weight the draw towards operations that build the DAG.
    st.sampled_from(["extract", "extract", "split", "split", "merge", "cut", "cut", "transfer", "export",
                     "export", "sanction", "freeze", "junk", "harvest", "harvest", "process", "process",
                     "ship_food"]),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(1, 20_000),
)  # fmt: skip
programs = st.lists(op, min_size=1, max_size=18)


def _assets(world: World, prefix: bytes) -> list[str]:
    return [key.split(b"/")[-1].decode() for key, _ in world.state.scan(prefix)]


def _pick(items: list[str], index: int) -> str:
    return items[index % len(items)] if items else "none"


def run_program(world: World, program: list[tuple[str, int, int, int]]) -> None:
    if world.state.get(b"d/mine/M0") is None:
        world.ok(
            "kp-bw",
            "diamonds",
            "register_mine",
            {"mine_id": "M0", "country": "BW", "operator": "debswana"},
        )
        world.ok(
            "kp-bw",
            "diamonds",
            "register_mine",
            {"mine_id": "M1", "country": "BW", "operator": "debswana"},
        )
        # A prelude so that every program has parcels to work on, one of
        # them held by an organisation that may cut.
        for parcel, mine in (("PA", "M0"), ("PB", "M1")):
            world.ok(
                "debswana",
                "diamonds",
                "extract",
                {"mine_id": mine, "parcel_id": parcel, "carats_points": 10_000},
            )
        world.ok("debswana", "diamonds", "transfer", {"asset_id": "PB", "to_org": "bw-trader"})
    for step, (kind, a, b, amount) in enumerate(program):
        _run_step(world, step, kind, a, b, amount)


def _asset(world: World, asset_id: str) -> dict[str, object]:
    answer = query(world.state, "diamonds", "asset", {"asset_id": asset_id})
    if answer["ok"]:
        return answer["result"]  # type: ignore[return-value]
    return {"owner": "debswana", "carats_points": 1}


def _run_step(world: World, step: int, kind: str, a: int, b: int, amount: int) -> None:
    """One operation; ``amount % 4 == 0`` makes quantities deliberately wrong."""
    diamonds = _assets(world, b"d/asset/")
    lots = _assets(world, b"f/lot/")
    target = _pick(diamonds, a)
    asset = _asset(world, target)
    owner = str(asset["owner"])
    carats = int(asset["carats_points"])  # type: ignore[call-overload]
    skew = 1 if amount % 4 == 0 else 0
    match kind:
        case "extract":
            world.send(
                "debswana",
                "diamonds",
                "extract",
                {"mine_id": f"M{a % 2}", "parcel_id": f"X{step}", "carats_points": amount},
            )
        case "split":
            first = max(1, carats * (b % 9 + 1) // 10)
            outputs = stones((f"S{step}a", first), (f"S{step}b", carats - first + skew))
            world.send(owner, "diamonds", "split", {"asset_id": target, "outputs": outputs})
        case "merge":
            other = _pick(diamonds, b) if _pick(diamonds, b) != target else _pick(diamonds, b + 1)
            world.send(
                owner,
                "diamonds",
                "merge",
                {"inputs": sorted({target, other}), "output_id": f"G{step}"},
            )
        case "cut":
            first = max(1, carats * (b % 3 + 1) // 10)
            second = max(1, carats * 2 // 10) + skew * carats
            world.send(
                owner,
                "diamonds",
                "cut",
                {"asset_id": target, "stones": stones((f"C{step}a", first), (f"C{step}b", second))},
            )
        case "transfer":
            world.send(
                owner,
                "diamonds",
                "transfer",
                {"asset_id": target, "to_org": DIAMOND_HOLDERS[b % 4]},
            )
        case "export":
            cert = f"BW-{step}"
            world.send(
                "kp-bw",
                "diamonds",
                "issue_kp_certificate",
                kp_args(cert, [target], carats + skew, exporter=owner),
            )
            world.send(owner, "diamonds", "ship", {"cert_id": cert})
            world.send(
                "kp-be", "diamonds", "confirm_import", {"cert_id": cert, "carats_points": carats}
            )
        case "sanction":
            world.send(
                "regulator",
                "diamonds",
                "sanction",
                {"kind": "mine", "target": f"M{a % 2}", "reason": "r"},
            )
        case "freeze":
            world.send("regulator", "diamonds", "freeze", {"asset_id": target})
        case "junk":
            world.send(
                owner,
                "diamonds",
                "transfer",
                {"asset_id": target, "to_org": "bw-trader"},
                nonce=world.nonce(owner) + 1 + b,
            )
            world.send(
                owner,
                "diamonds",
                "transfer",
                {"asset_id": target, "to_org": "bw-trader"},
                chain_id="elsewhere",
            )
        case "harvest":
            world.send(
                "farm",
                "food",
                "harvest",
                {"lot_id": f"L{step}", "product": "corn", "mass_grams": amount},
            )
            world.send("farm", "food", "ship", {"lot_id": f"L{step}", "to_org": "mill"})
            world.send("mill", "food", "receive", {"lot_id": f"L{step}"})
        case "process":
            other = _pick(lots, b) if _pick(lots, b) != _pick(lots, a) else _pick(lots, b + 1)
            inputs = sorted({_pick(lots, a), other})
            used = amount % 200 + 1
            world.send("mill", "food", "process", {
                "inputs": [{"lot_id": lot, "mass_grams": used} for lot in inputs],
                "outputs": [{"lot_id": f"O{step}", "product": "meal", "mass_grams": used + skew}],
            })  # fmt: skip
        case "ship_food":
            world.send("mill", "food", "ship", {"lot_id": _pick(lots, a), "to_org": "bakery"})


@pytest.mark.slow
@PROGRAM_SETTINGS
@given(programs)
def test_replay_on_a_fresh_state_gives_identical_receipts_and_roots(
    program: list[tuple[str, int, int, int]],
) -> None:
    world = World()
    receipts = []
    roots = []
    original = MemoryState(genesis_state(world.genesis))
    run_program(world, program)
    for tx, block in world.log:
        receipts.append(execute(original, tx, block).to_dict())
        roots.append(original.root())
    replica = MemoryState(genesis_state(make_genesis()))
    for (tx, block), receipt, root in zip(world.log, receipts, roots, strict=True):
        assert execute(replica, tx, block).to_dict() == receipt
        assert replica.root() == root
    assert pairs(replica) == pairs(world.state)
    assert replica.root() == world.state.root() == root_from_snapshot(pairs(replica))


def _records(
    world: World, prefix: bytes, contract: str, name: str, id_field: str
) -> list[dict[str, Any]]:
    records = []
    for record_id in _assets(world, prefix):
        answer = query(world.state, contract, name, {id_field: record_id})
        assert answer["ok"]
        assert isinstance(answer["result"], dict)
        records.append(answer["result"])
    return records


@PROGRAM_SETTINGS
@given(programs)
def test_mass_is_never_created(program: list[tuple[str, int, int, int]]) -> None:
    world = World()
    run_program(world, program)
    diamonds = _records(world, b"d/asset/", "diamonds", "asset", "asset_id")
    by_id = {str(d["asset_id"]): d for d in diamonds}
    extracted = sum(int(d["carats_points"]) for d in diamonds if not d["parents"])
    live = sum(int(d["carats_points"]) for d in diamonds if d["status"] != "consumed")
    assert live <= extracted
    for diamond in diamonds:
        children = [d for d in diamonds if diamond["asset_id"] in d["parents"]]
        if (
            diamond["status"] == "consumed"
            and children
            and all(len(c["parents"]) == 1 for c in children)
        ):
            assert sum(int(c["carats_points"]) for c in children) <= int(diamond["carats_points"])
        if len(diamond["parents"]) > 1:
            assert int(diamond["carats_points"]) == sum(
                int(by_id[str(p)]["carats_points"]) for p in diamond["parents"]
            )
    lots = _records(world, b"f/lot/", "food", "lot", "lot_id")
    harvested = sum(
        int(e["attributes"]["mass_grams"])
        for lot in lots
        for e in _events(world, str(lot["lot_id"]))
        if e["kind"] == "harvested"
    )
    assert sum(int(lot["mass_grams"]) for lot in lots) <= harvested


def _events(world: World, lot_id: str) -> list[dict[str, Any]]:
    answer: Any = query(world.state, "food", "trace_back", {"lot_id": lot_id})
    events: list[dict[str, Any]] = answer["result"]["nodes"][0]["events"]
    return events


taints = st.sampled_from(["mine", "org", "freeze", "revoke_kp", "country"])


@PROGRAM_SETTINGS
@given(programs, taints, st.integers(0, 50))
def test_a_tainted_upstream_makes_every_downstream_asset_non_compliant(
    program: list[tuple[str, int, int, int]], taint: str, pick: int
) -> None:
    world = World()
    world.genesis = make_genesis()
    run_program(world, program)
    diamonds = _records(world, b"d/asset/", "diamonds", "asset", "asset_id")
    source = diamonds[pick % len(diamonds)]
    _apply_taint(world, taint, source)
    tainted = _downstream(diamonds, str(source["asset_id"]))
    for diamond in diamonds:
        verdict = world.query("diamonds", "compliance", {"asset_id": diamond["asset_id"]})
        if diamond["asset_id"] in tainted and _taint_applies(taint, source):
            assert verdict["conflict_free"] is False, (
                taint,
                source["asset_id"],
                diamond["asset_id"],
            )
            assert verdict["failures"]


def _apply_taint(world: World, taint: str, source: dict[str, object]) -> None:
    if taint == "freeze":
        world.send("regulator", "diamonds", "freeze", {"asset_id": source["asset_id"]})
    elif taint == "org":
        world.send(
            "regulator",
            "diamonds",
            "sanction",
            {"kind": "org", "target": source["owner"], "reason": "r"},
        )
    elif taint == "country":
        world.send(
            "regulator", "diamonds", "sanction", {"kind": "country", "target": "BW", "reason": "r"}
        )
    elif taint == "mine" and source["mine_id"]:
        world.send(
            "regulator",
            "diamonds",
            "sanction",
            {"kind": "mine", "target": source["mine_id"], "reason": "r"},
        )
    elif taint == "revoke_kp" and source["kp_certificates"]:
        cert = source["kp_certificates"][0]  # type: ignore[index]
        world.send(
            "regulator",
            "diamonds",
            "revoke_certificate",
            {"kind": "kp", "cert_id": cert, "reason": "r"},
        )


def _taint_applies(taint: str, source: dict[str, object]) -> bool:
    if taint == "mine":
        return bool(source["mine_id"])
    if taint == "revoke_kp":
        return bool(source["kp_certificates"])
    if taint == "country":
        return True  # every parcel is mined in BW
    return True


def _downstream(diamonds: list[dict[str, Any]], source: str) -> set[str]:
    found = {source}
    changed = True
    while changed:
        changed = False
        for diamond in diamonds:
            if diamond["asset_id"] not in found and found & set(diamond["parents"]):
                found.add(str(diamond["asset_id"]))
                changed = True
    return found


METHODS = {
    "membership": ["propose", "vote", "revoke_own_key"],
    "diamonds": ["register_mine", "set_mine_accreditation", "extract", "issue_kp_certificate", "ship",
                 "confirm_import", "transfer", "split", "merge", "cut", "grade", "sell", "sanction",
                 "lift_sanction", "freeze", "unfreeze", "revoke_certificate"],
    "food": ["harvest", "process", "ship", "receive", "certify", "revoke_certificate", "recall"],
}  # fmt: skip
ARG_NAMES = ["mine_id", "country", "operator", "parcel_id", "carats_points", "asset_id", "outputs", "stones",
             "inputs", "output_id", "cert_id", "to_org", "lot_id", "mass_grams", "kind", "target", "reason",
             "action", "params", "proposal_id", "approve", "key", "product", "expiry_height", "parcels"]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.sampled_from(["P1", "M1", "BW", "debswana", "a/b", ""]),
    st.binary(max_size=33),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(ARG_NAMES), inner, max_size=4)
    ),
    max_leaves=12,
)
calls = st.sampled_from(
    [(contract, method) for contract, methods in METHODS.items() for method in methods]
)
senders = st.sampled_from(
    ["debswana", "antwerp", "regulator", "kp-bw", "mill", "gia", "safety-lab"]
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(senders, calls, st.dictionaries(st.sampled_from(ARG_NAMES), values, max_size=6)),
        max_size=6,
    )
)
def test_arbitrary_arguments_never_escape_execute_as_exceptions(
    program: list[tuple[str, tuple[str, str], dict[str, object]]],
) -> None:
    world = World()
    run_program(world, [("extract", 0, 0, 100)])
    for sender, (contract, method), args in program:
        root = world.state.root()
        receipt = world.send(sender, contract, method, args)
        if not receipt.ok:
            assert receipt.error is not None and receipt.writes == 1
            assert receipt.events == ()
        else:
            assert world.state.root() != root

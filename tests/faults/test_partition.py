"""Network partitions between validators on separate "hosts", under SDK load.

Each validator runs in its own network namespace with its own address,
joined to the others by veth pairs and a bridge, started with ``provenet
node run --config`` from a directory ``provenet net init --hosts`` wrote
(tests/faults/multihost.py).  The SDK workload and the history checker run
in the test process, in the root namespace, and reach the validators
through the bridge; a partition (iptables DROP rules inside the validators'
namespaces) cuts validator-to-validator links only, so the test still sees
each side's height and clients may still reach a cut-off node, as they
would in a real split.

* The primary cut off: no commit on its side, a new primary on the other
  side commits, one chain after healing and the old primary rejoins.
* A 2/2 split: no quorum anywhere, so no commit at all; commits resume
  after healing.

Each prints the harness's ``FAULT_REPORT`` line and a ``PARTITION`` line
(heights on each side during the cut).  They need root (skip otherwise),
and remove every namespace, veth, bridge and rule they made, even on
failure.  A short 2/2 split (3 s) runs by default; the full scenarios
(30 s and 20 s cuts) run with
``PROVENET_FAULTS=1 scripts/test tests/faults -m faults -s``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from faults.harness import Campaign, FaultReport, ProcessNetwork, WorkloadPlan, now_s
from faults.multihost import namespace_network
from faults.netns import PREFIX, existing, remove_all, sweep_leftovers, unavailable_reason

pytestmark = [pytest.mark.asyncio, pytest.mark.network, pytest.mark.slow]

needs_faults = pytest.mark.skipif(
    not os.environ.get("PROVENET_FAULTS"), reason="set PROVENET_FAULTS=1 for the fault campaign"
)

# Messages already delivered into a node's socket buffers when the rules go
# in may still complete a commit: heights are compared from this long after.
SETTLE_S = 1.5
PRIMARY_CUT_S = 30.0
SPLIT_S = 20.0
PHASE_S = 5.0
SHORT_SPLIT_S = 3.0
SHORT_PHASE_S = 2.0
POLL_S = 0.25
PLAN = WorkloadPlan(rate_tx_s=20, window=8)


@pytest.fixture
def netns_ok() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def nothing_left_behind(netns_ok: None) -> Any:
    """Whatever the test did, none of its namespaces or links survive it."""
    yield
    ours = f"{PREFIX}{os.getpid()}-"
    left = existing(ours)
    remove_all(ours)  # so one failure does not leave them to the next test
    sweep_leftovers()
    assert not left, f"left behind: {left}"


async def heights(net: ProcessNetwork, names: Sequence[str]) -> dict[str, int | None]:
    statuses = await net.statuses()
    return {n: None if (s := statuses[n]) is None else int(s["height"]) for n in names}


async def views(net: ProcessNetwork, names: Sequence[str]) -> dict[str, int | None]:
    statuses = await net.statuses()
    return {n: None if (s := statuses[n]) is None else int(s["view"]) for n in names}


def highest_sampled(campaign: Campaign, name: str, start_s: float, end_s: float) -> int | None:
    samples = [
        s.height
        for s in campaign.monitor.samples
        if s.name == name and start_s <= s.at_s <= end_s and s.height is not None
    ]
    return max(samples, default=None)


def print_detail(detail: dict[str, Any]) -> None:
    line = "PARTITION " + json.dumps(detail, sort_keys=True)
    print(line, flush=True)


# ---------------------------------------------------------------- the primary cut off


async def cut_off_the_primary(
    tmp_path: Path, cut_s: float, phase_s: float
) -> tuple[FaultReport, dict[str, Any]]:
    async with namespace_network(tmp_path) as (net, hosts):
        campaign = Campaign("partition-primary", net, PLAN)
        await campaign.start()
        await campaign.run_for(phase_s)
        primary = await net.primary()
        others = [name for name in net.validators if name != primary]
        view_before = (await views(net, [primary]))[primary]
        fault = campaign.faults.begin("partition_primary", primary)
        hosts.partition([primary], others)
        await asyncio.sleep(SETTLE_S)
        settled_s = now_s()
        at_cut = await heights(net, net.validators)
        majority_ack = await campaign.wait_commit_after(fault, timeout_s=cut_s)
        majority_views = await views(net, others)
        await asyncio.sleep(max(0.0, fault.at_s + cut_s - now_s()))
        at_heal = await heights(net, net.validators)
        primary_highest = highest_sampled(campaign, primary, settled_s, now_s())
        hosts.heal()
        campaign.faults.heal(fault)
        caught_up = await campaign.wait_caught_up(fault)
        await campaign.run_for(phase_s)
        report = await campaign.finish()
    detail = {
        "scenario": "partition-primary",
        "primary": primary,
        "view_before": view_before,
        "cut_s": cut_s,
        "heights_after_settle": at_cut,
        "heights_at_heal": at_heal,
        "primary_highest_while_cut": primary_highest,
        "majority_committed_s": None
        if majority_ack is None
        else round(majority_ack.acked_s - fault.at_s, 2),
        "majority_views_then": majority_views,
        "caught_up_after_heal": caught_up,
    }
    print_detail(detail)
    return report, detail


def check_primary_cut(report: FaultReport, detail: dict[str, Any]) -> None:
    primary = detail["primary"]
    assert None not in detail["heights_at_heal"].values(), detail
    # No commit on the cut-off primary's side.
    assert detail["heights_at_heal"][primary] == detail["heights_after_settle"][primary], detail
    assert detail["primary_highest_while_cut"] == detail["heights_after_settle"][primary], detail
    # The other side elected a new primary and committed.
    assert detail["majority_committed_s"] is not None, detail
    assert all(
        v is not None and v > detail["view_before"] for v in detail["majority_views_then"].values()
    ), detail
    others = [n for n in detail["heights_at_heal"] if n != primary]
    assert all(detail["heights_at_heal"][n] > detail["heights_after_settle"][n] for n in others), (
        detail
    )
    # After healing: one chain, the old primary caught up, nothing lost, one view.
    assert detail["caught_up_after_heal"], detail
    report.assert_ok()


@pytest.mark.faults
@needs_faults
async def test_the_primary_cut_off_for_30_s(tmp_path: Path) -> None:
    report, detail = await cut_off_the_primary(tmp_path, PRIMARY_CUT_S, PHASE_S)
    check_primary_cut(report, detail)


# ---------------------------------------------------------------- a 2/2 split


async def split_two_two(
    tmp_path: Path, split_s: float, phase_s: float
) -> tuple[FaultReport, dict[str, Any]]:
    async with namespace_network(tmp_path) as (net, hosts):
        campaign = Campaign("partition-2-2", net, PLAN, expected_outage_s=split_s)
        await campaign.start()
        await campaign.run_for(phase_s)
        left, right = net.validators[:2], net.validators[2:]
        fault = campaign.faults.begin("partition_2_2", *net.validators)
        hosts.partition(left, right)
        await asyncio.sleep(SETTLE_S)
        settled_s = now_s()
        at_split = await heights(net, net.validators)
        await asyncio.sleep(max(0.0, fault.at_s + split_s - now_s()))
        at_heal = await heights(net, net.validators)
        highest = {n: highest_sampled(campaign, n, settled_s, now_s()) for n in net.validators}
        acked_during = sum(1 for a in campaign.workload.acks if settled_s < a.acked_s <= now_s())
        hosts.heal()
        campaign.faults.heal(fault)
        healed_s = now_s()
        resumed = await campaign.workload.wait_for_ack(lambda a: a.acked_s >= healed_s, 90.0)
        caught_up = await campaign.wait_caught_up(fault)
        await campaign.run_for(phase_s)
        report = await campaign.finish()
    detail = {
        "scenario": "partition-2-2",
        "sides": [left, right],
        "split_s": split_s,
        "heights_after_settle": at_split,
        "heights_at_heal": at_heal,
        "highest_while_split": highest,
        "acked_while_split": acked_during,
        "commit_resumed_after_heal_s": None
        if resumed is None
        else round(resumed.acked_s - healed_s, 2),
        "caught_up_after_heal": caught_up,
    }
    print_detail(detail)
    return report, detail


def check_split(report: FaultReport, detail: dict[str, Any]) -> None:
    # Every validator still answered its clients (the cut is between validators only)...
    assert None not in detail["heights_after_settle"].values(), detail
    assert None not in detail["heights_at_heal"].values(), detail
    # ...and none committed anything while split.
    assert detail["heights_at_heal"] == detail["heights_after_settle"], detail
    assert detail["highest_while_split"] == detail["heights_after_settle"], detail
    assert detail["acked_while_split"] == 0, detail
    # Commits resume after healing, on one chain, nothing lost.
    assert detail["commit_resumed_after_heal_s"] is not None, detail
    assert detail["caught_up_after_heal"], detail
    report.assert_ok()


async def test_a_short_2_2_split(tmp_path: Path) -> None:
    """The default run's short form (about 15 s): a 3 s split between short phases."""
    report, detail = await split_two_two(tmp_path, SHORT_SPLIT_S, SHORT_PHASE_S)
    check_split(report, detail)


@pytest.mark.faults
@needs_faults
async def test_a_2_2_split_for_20_s(tmp_path: Path) -> None:
    report, detail = await split_two_two(tmp_path, SPLIT_S, PHASE_S)
    check_split(report, detail)

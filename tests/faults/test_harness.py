"""The harness's own bookkeeping, on made-up data: what counts as lost, waits, recovery.

A checker that miscounts would pass a run that lost transactions, or fail
one that did not (a transaction ordered twice is on the chain twice, the
second time as "duplicate"), so its rules are pinned here.
"""

from __future__ import annotations

import asyncio

import pytest

from faults import harness
from faults.harness import (
    Ack,
    Campaign,
    Fault,
    FaultReport,
    History,
    Sample,
    StatusMonitor,
    Workload,
    WorkloadPlan,
    missing,
    places,
    recovery,
)


def ack(tx: str, height: int, block: str, at_s: float = 1.0, sender: str = "farm") -> Ack:
    return Ack(sender, 0, tx, at_s - 0.5, at_s, height, block, "ok", None)


CHAIN = {
    1: {"hash": "h1", "txs": [{"tx_id": "a", "status": "ok"}]},
    2: {"hash": "h2", "txs": [{"tx_id": "b", "status": "ok"}]},
    # "a" ordered again after it executed: its second receipt is "duplicate".
    3: {"hash": "h3", "txs": [{"tx_id": "a", "status": "duplicate"}]},
}


def test_an_ack_is_found_where_its_proof_placed_it_even_if_ordered_again() -> None:
    assert missing([ack("a", 1, "h1"), ack("b", 2, "h2")], places(CHAIN)) == []


def test_an_ack_absent_or_in_another_block_or_result_is_lost() -> None:
    placed = places(CHAIN)
    absent, moved, other_block = ack("c", 2, "h2"), ack("b", 3, "h3"), ack("b", 2, "hX")
    rejected = Ack("farm", 0, "b", 0.5, 1.0, 2, "h2", "rejected", "bad_nonce")
    assert missing([absent, moved, other_block, rejected], placed) == [
        absent,
        moved,
        other_block,
        rejected,
    ]


def test_the_longest_wait_counts_from_the_start_and_up_to_the_stop() -> None:
    workload = Workload.__new__(Workload)
    workload.plan = WorkloadPlan(senders=("farm", "miner"))
    workload.started_s, workload.stopped_s = 0.0, 30.0
    workload.acks = [ack("a", 1, "h", 2.0), ack("b", 1, "h", 5.0), ack("c", 1, "h", 9.0, "miner")]
    # farm: acks at 2 and 5, then nothing until the stop at 30 (a wedge).
    assert workload.longest_waits_s() == {"farm": 25.0, "miner": 21.0}


def test_recovery_measures_commit_catch_up_and_one_view_from_the_samples() -> None:
    monitor = StatusMonitor.__new__(StatusMonitor)
    monitor.samples = []
    rounds: list[tuple[float, tuple[int | None, ...], tuple[int | None, ...]]] = [
        (10.0, (5, 5), (0, 0)),  # before the fault
        (19.0, (9, None), (1, None)),  # v1 down, v0 went on to 9
        (21.0, (9, 5), (1, 2)),  # healed at 20: v1 behind and in a view of its own
        (22.0, (9, 9), (1, 2)),  # caught up
        (25.0, (10, 10), (1, 1)),  # one view
    ]
    for at_s, heights, views in rounds:
        for name, height, view in zip(("v0", "v1"), heights, views, strict=True):
            monitor.samples.append(Sample(at_s, name, height, view))
    fault = Fault("kill9", ("v1",), at_s=12.0, healed_s=20.0)
    acks = [ack("old", 4, "h", 12.2), ack("new", 9, "h", 16.0)]  # "old" was sent before
    assert acks[0].submitted_s < fault.at_s <= acks[1].submitted_s
    result = recovery(fault, acks, monitor, ["v0", "v1"])
    assert result["commit_after_fault_s"] == 4.0
    assert result["caught_up_after_heal_s"] == 2.0
    assert result["one_view_after_heal_s"] == 5.0
    assert result["outage_s"] == 8.0


def _report(**changes: object) -> FaultReport:
    fields: dict[str, object] = {
        "scenario": "s",
        "acknowledged": 10,
        "lost": 0,
        "rejected": 0,
        "errors": {},
        "proof_errors": 0,
        "recovery": [],
        "longest_sender_wait_s": {"farm": 1.0},
        "final_views": {"v0": 1, "v1": 1},
        "final_heights": {"v0": 7, "v1": 7},
        "converged": True,
        "one_chain": True,
        "reordered_again": 0,
        "log_tracebacks": {},
        "duration_s": 1.0,
        "offered_rate_tx_s": 1.0,
    }
    return FaultReport(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_report_fails_on_loss_forks_stranded_views_wedges_and_tracebacks() -> None:
    assert _report().problems() == []
    assert _report(lost=1).problems()
    assert _report(one_chain=False).problems()
    assert _report(final_views={"v0": 1, "v1": 2}).problems()
    assert _report(longest_sender_wait_s={"farm": 100.0}).problems()
    assert _report(longest_sender_wait_s={"farm": 100.0}, expected_outage_s=90.0).problems() == []
    assert _report(log_tracebacks={"v0": ["x"]}).problems()
    stalled = {"commit_after_fault_s": None, "outage_s": None, "caught_up_after_heal_s": 1.0}
    assert _report(recovery=[stalled]).problems()


class _SteadyNet:
    """Two nodes at one height, answering at once: a fault that cost no height."""

    names = ("v0", "o0")
    validators = ("v0",)

    async def statuses(self, timeout_s: float = 1.0) -> dict[str, dict[str, int]]:
        return {name: {"height": 7, "view": 0} for name in self.names}

    def log_tracebacks(self) -> dict[str, list[str]]:
        return {}


@pytest.mark.asyncio
async def test_a_run_that_ends_right_after_the_heal_still_measures_the_catch_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def converged(_net: object, _acks: object) -> History:
        return History(True, {n: {"height": 7, "view": 0} for n in _SteadyNet.names}, [], [])

    monkeypatch.setattr(harness, "check_history", converged)
    campaign = Campaign("steady", _SteadyNet(), WorkloadPlan())  # type: ignore[arg-type]
    # The monitor alone: this network takes no load.
    campaign.workload.started_s = harness.now_s()
    campaign.monitor.start()
    fault = campaign.faults.begin("mitm", "o0")
    await asyncio.sleep(0.3)
    # The heal and the end of the run within one monitor round of each other.
    campaign.faults.heal(fault)
    acked = Ack("farm", 0, "a", fault.at_s, fault.at_s + 0.1, 7, "h", "ok", None)
    campaign.workload.acks.append(acked)
    report = await campaign.finish()
    assert report.recovery[0]["caught_up_after_heal_s"] is not None, report.recovery
    assert report.problems() == []

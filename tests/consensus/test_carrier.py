"""Carrier blocks: when the chain goes idle, the primary proposes one empty
batch so that the last results are carried (and so certified), and backups
accept an empty batch only when it may carry something new."""

from __future__ import annotations

from helpers import (
    T0,
    Node,
    batch,
    commit_votes,
    delivered,
    drive_committed,
    make_config,
    node,
    pre_prepare,
    prepare_votes,
    prepared_certificate,
    request,
    results_root,
    sent,
    view_change,
)

from consensus.blocks import ChainTip
from consensus.events import Effect
from consensus.messages import Batch, NewView, Prepare, PrePrepare, Status

LATER = T0 + 1_000


def proposals(effects: list[Effect]) -> list[PrePrepare]:
    return sent(effects, PrePrepare)


def commit_own(primary: Node, view: int, b: Batch) -> list[Effect]:
    """Prepares and commits from the others for the primary's own proposal."""
    effects: list[Effect] = []
    effects += primary.receive(*prepare_votes(primary, view, b))
    effects += primary.receive(*commit_votes(primary, view, b))
    return effects


def empty(height: int, executed_height: int) -> Batch:
    return Batch(height, (), T0, executed_height, results_root(executed_height))


def test_an_idle_primary_proposes_exactly_one_carrier_after_a_burst_then_stays_quiet() -> None:
    primary = node(0, make_config(0, max_batch_size=1))
    # A burst of two heights in flight at once.
    [first] = proposals(primary.request(request("a")))
    [second] = proposals(primary.request(request("b")))
    assert [first.height, second.height] == [1, 2]
    assert len(delivered(commit_own(primary, 0, first.batch))) == 1
    assert len(delivered(commit_own(primary, 0, second.batch))) == 1
    # Height 1 executed but height 2 not yet: no carrier (it would carry
    # only height 1, and another would follow for height 2).
    primary.executed(1)
    assert proposals(primary.tick(LATER)) == []
    primary.executed(2)
    [carrier] = proposals(primary.tick(LATER + 10))
    assert carrier.height == 3
    assert carrier.batch.requests == ()
    assert (carrier.batch.executed_height, carrier.batch.executed_results_root) == (
        2,
        results_root(2),
    )
    assert len(delivered(commit_own(primary, 0, carrier.batch))) == 1
    primary.executed(3)
    # The carrier's own results need no carrier: the chain goes quiet.
    for later in range(1, 20):
        assert proposals(primary.tick(LATER + 1_000 * later)) == []


def test_a_carrier_waits_batch_timeout_for_a_request_that_can_carry_instead() -> None:
    primary = node(0, make_config(0, max_batch_size=1, batch_timeout_ms=50))
    [first] = proposals(primary.request(request("a")))
    commit_own(primary, 0, first.batch)
    assert proposals(primary.executed(1)) == []
    [next_one] = proposals(primary.request(request("b")))
    assert next_one.batch.requests == (request("b"),)
    assert next_one.batch.executed_height == 1


def backup_with_height_one_executed() -> Node:
    backup = node(1)
    assert len(delivered(drive_committed(backup, 0, batch(1)))) == 1
    backup.executed(1)
    return backup


def test_a_backup_accepts_an_empty_batch_carrying_new_results() -> None:
    backup = backup_with_height_one_executed()
    effects = backup.receive(pre_prepare(0, empty(2, 1)))
    assert [p.height for p in sent(effects, Prepare)] == [2]
    assert backup.replica.dropped == {}


def test_a_backup_refuses_an_empty_batch_that_carries_nothing_new() -> None:
    backup = backup_with_height_one_executed()
    # Height 2 already carries height 1's results: an empty batch at 3
    # carrying 1 again, or carrying only the empty height 2, is spam.
    backup.receive(pre_prepare(0, batch(2, executed_height=1, executed_root=results_root(1))))
    assert backup.receive(pre_prepare(0, empty(3, 1))) == []
    assert backup.receive(pre_prepare(0, empty(3, 0))) == []
    assert backup.replica.dropped == {"bad_batch:empty_carries_nothing": 2}


def test_a_backup_refuses_empty_batches_that_carry_only_each_other() -> None:
    backup = backup_with_height_one_executed()
    assert sent(backup.receive(pre_prepare(0, empty(2, 1))), Prepare)
    # Height 3 would carry height 2, which the backup knows is empty.
    assert backup.receive(pre_prepare(0, empty(3, 2))) == []
    assert backup.replica.dropped == {"bad_batch:empty_carries_nothing": 1}


def test_a_restarted_backup_gives_a_carrier_of_heights_it_never_saw_the_benefit_of_the_doubt() -> (
    None
):
    tip = ChainTip(5, b"\x01" * 32, T0, results_root(5))
    backup = node(1, tip=tip)
    effects = backup.receive(pre_prepare(0, empty(6, 5)))
    assert [p.height for p in sent(effects, Prepare)] == [6]


def test_null_batches_of_a_new_view_are_delivered_and_carry_nothing() -> None:
    """A new view fills height 1 with the null batch and re-proposes the
    prepared height 2; both are delivered, and the new primary then carries
    height 2's results in one empty batch (a null batch carries nothing)."""
    new_primary = node(1)
    prepared = prepared_certificate(0, batch(2))
    effects = new_primary.receive(view_change(1, 2, prepared=[prepared]), view_change(1, 3))
    [announced] = sent(effects, NewView)
    null, kept = (p.batch for p in announced.pre_prepares)
    assert null == Batch.null(1)
    assert kept == batch(2)
    blocks = delivered(commit_own(new_primary, 1, null) + commit_own(new_primary, 1, kept))
    assert [b.header.height for b in blocks] == [1, 2]
    new_primary.executed(1)
    new_primary.executed(2)
    [carrier] = proposals(new_primary.tick(LATER))
    assert (carrier.height, carrier.batch.requests, carrier.batch.executed_height) == (3, (), 2)
    assert carrier.batch.executed_results_root == results_root(2)


def test_a_stuck_slot_is_resent_at_heartbeats_so_a_carrier_with_lost_votes_commits() -> None:
    """A carrier starts no request timer, so a vote lost on the way (a peer
    was down) would strand it until the next request: on each heartbeat a
    replica re-broadcasts its own part of the lowest undelivered slot."""
    primary = node(0, make_config(0, max_batch_size=1))
    [first] = proposals(primary.request(request("a")))
    commit_own(primary, 0, first.batch)
    primary.executed(1)
    [carrier] = proposals(primary.tick(LATER))
    # The backups' prepares are lost: nothing else happens until the heartbeats.
    seen = primary.tick(LATER + 600)
    assert proposals(seen) == []
    resent = primary.tick(LATER + 1_200)
    assert proposals(resent) == [carrier]
    backup = node(1, make_config(1, max_batch_size=1))
    drive_committed(backup, 0, first.batch)
    backup.executed(1)
    votes = backup.receive(carrier)
    [prepare] = sent(votes, Prepare)
    backup.tick(LATER + 600)
    assert sent(backup.tick(LATER + 1_200), Prepare) == [prepare]
    # Once committed, nothing more is re-sent.
    assert len(delivered(commit_own(primary, 0, carrier.batch))) == 1
    assert proposals(primary.tick(LATER + 1_800)) == []
    assert proposals(primary.tick(LATER + 2_400)) == []


def test_a_backup_suspects_a_primary_that_leaves_executed_results_uncarried() -> None:
    """A primary that dies right after a block of requests never carries its
    results, and with no request waiting nothing else would depose it: the
    uncarried results run the request timer as a waiting request does."""
    config = make_config(1, max_batch_size=1)
    backup = node(1, config)
    [proposal] = proposals(node(0, make_config(0, max_batch_size=1)).request(request("a")))
    drive_committed(backup, 0, proposal.batch)
    backup.executed(1)
    assert backup.replica.waiting == {}
    quiet = backup.tick(T0 + config.request_timeout_ms // 2)
    assert not any(status.suspect for status in sent(quiet, Status))
    late = backup.tick(T0 + 2 * config.request_timeout_ms)
    assert any(status.suspect for status in sent(late, Status))

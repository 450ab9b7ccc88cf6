"""When a replica votes to change the view (two defects found under faults).

Defect 2 (a replica left alone in a higher view): a timer of one replica
never takes it above the others.  An expired timer only makes it *suspect*
the primary (a flag in its STATUS, no promise); it sends VIEW-CHANGE once
f+1 replicas, itself included, suspect that primary or are past it.  A
replica catching up does not suspect, and one that resumes after a pause
restarts its timers.  Defect 3 (view changes cascading under load): the
request timer measures the cluster's commit progress, doubles after each
view change without progress, and allows twice the longest recent wait.

n = 4 (f = 1, f + 1 = 2) unless a test says otherwise; the replica under
test is backup 1 of view 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpers import (
    T0,
    Node,
    batch,
    commit,
    make_config,
    new_view,
    node,
    pre_prepare,
    prepare,
    request,
    sent,
    signed,
    suspicion,
    view_change,
    without_status,
)

from consensus.events import Broadcast, Send
from consensus.messages import ForwardedRequest, Status, ViewChange

TIMEOUT = {"request_timeout_ms": 1_000, "view_change_timeout_ms": 1_000}


def statuses(effects: Sequence[object]) -> list[Status]:
    return [
        e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, Status)
    ]


def waiting_backup(me: int = 1, **overrides: int) -> Node:
    backup = node(me, make_config(me, **{**TIMEOUT, **overrides}))
    backup.request(request(1))
    return backup


# ---------------------------------------------------------------- defect 2: suspicion is not a vote


def test_a_lone_expired_request_timer_suspects_the_primary_but_sends_no_view_change() -> None:
    backup = waiting_backup()

    effects = backup.tick(T0 + 1_000)

    assert sent(effects, ViewChange) == []
    assert (backup.replica.view, backup.replica.active) == (0, True)
    [status] = statuses(effects)
    assert status.suspect and (status.view, status.view_active) == (0, True)
    # It hands its waiting request to every peer, so their timers run too.
    assert [e for e in effects if isinstance(e, Send)] == [
        Send(peer, ForwardedRequest(request(1), 1)) for peer in (0, 2, 3)
    ]
    # Still in view 0, it votes there: a pre-prepare of view 0 gets its prepare.
    b = batch(1, request(1), time_ms=T0 + 1_000)
    assert sent(backup.receive(pre_prepare(0, b)), type(prepare(0, 1, b.digest, 1)))


def test_a_second_replica_suspecting_the_primary_makes_f_plus_one_and_starts_the_view_change() -> (
    None
):
    backup = waiting_backup()
    backup.tick(T0 + 1_000)

    effects = backup.receive(suspicion(0, 3))

    assert [vc.new_view for vc in sent(effects, ViewChange)] == [1]
    assert (backup.replica.view, backup.replica.active) == (1, False)


def test_a_peer_already_in_a_later_view_counts_as_suspecting_the_primary() -> None:
    backup = waiting_backup()
    backup.receive(signed(Status(1, False, 0, 0, 2)))  # peer 2 is changing to view 1

    effects = backup.tick(T0 + 1_000)

    assert [vc.new_view for vc in sent(effects, ViewChange)] == [1]


def test_a_suspicion_lapses_when_the_cluster_makes_progress() -> None:
    backup = waiting_backup()
    backup.tick(T0 + 1_000)
    assert backup.replica.suspecting
    commit_height_two(backup, at_ms=T0 + 1_100)  # a block commits: the primary works

    effects = backup.tick(T0 + 1_200)

    assert not backup.replica.suspecting
    assert sent(backup.receive(suspicion(0, 3)), ViewChange) == []
    assert [s.suspect for s in statuses(effects)] in ([], [False])


def test_a_replica_catching_up_does_not_suspect_the_primary() -> None:
    backup = waiting_backup(max_request_wait_ms=30_000)
    # f + 1 peers report heights above ours: the cluster progresses, we lag.
    backup.receive(signed(Status(0, True, 9, 0, 2)), signed(Status(0, True, 9, 0, 3)))
    backup.receive(suspicion(0, 2, height=9))

    effects = without_status(backup.tick(T0 + 10_000))

    assert sent(effects, ViewChange) == [] and not backup.replica.suspecting
    # ...but a request left waiting max_request_wait_ms still deposes the
    # primary: keeping a replica behind is no way to censor it.
    assert [vc.new_view for vc in sent(backup.tick(T0 + 30_000), ViewChange)] == [1]


def test_one_peer_claiming_a_higher_height_is_not_enough_to_count_as_catching_up() -> None:
    backup = waiting_backup()
    backup.receive(signed(Status(0, True, 1_000_000, 0, 2)))  # perhaps a liar

    effects = backup.tick(T0 + 1_000)

    assert backup.replica.suspecting and [s.suspect for s in statuses(effects)] == [True]


def test_a_resumed_replica_restarts_its_timers_instead_of_suspecting_at_once() -> None:
    backup = waiting_backup(max_tick_gap_ms=500)
    backup.receive(suspicion(0, 3))  # a peer already suspects: one more would do
    backup.tick(T0 + 100)

    # SIGSTOP at T0 + 100, SIGCONT at T0 + 20,000: the clock jumped.
    assert sent(backup.tick(T0 + 20_000), ViewChange) == []
    assert not backup.replica.suspecting
    assert backup.replica.dropped["resumed_after_pause"] == 1
    for now in range(T0 + 20_100, T0 + 21_000, 100):
        assert sent(backup.tick(now), ViewChange) == []
    # A full timeout after the resume, with the peer's suspicion, it votes.
    assert [vc.new_view for vc in sent(backup.tick(T0 + 21_000), ViewChange)] == [1]


def test_a_changing_replica_whose_new_view_timer_expires_alone_does_not_move_on() -> None:
    backup = in_view_change_one()
    deadline = backup.replica.view_change_deadline_ms
    assert deadline is not None

    effects = backup.tick(deadline)

    # (It keeps re-sending its VIEW-CHANGE for view 1, and sends none for 2.)
    assert {vc.new_view for vc in sent(effects, ViewChange)} <= {1}
    assert backup.replica.view == 1
    assert [(s.view, s.view_active, s.suspect) for s in statuses(effects)] == [(1, False, True)]
    # f + 1 replicas suspect the primary of view 1: now it moves on.
    effects = backup.receive(suspicion(1, 3, active=False))
    assert [vc.new_view for vc in sent(effects, ViewChange)] == [2]


def test_a_changing_replica_whose_peers_are_active_in_its_view_waits_for_the_new_view() -> None:
    backup = in_view_change_one()
    deadline = backup.replica.view_change_deadline_ms
    assert deadline is not None
    # f + 1 peers say view 1 started: its NEW-VIEW is on its way to us.
    backup.receive(signed(Status(1, True, 0, 0, 1)), signed(Status(1, True, 0, 0, 3)))
    backup.receive(suspicion(1, 0, active=False))

    effects = backup.tick(deadline + 10_000)

    assert {vc.new_view for vc in sent(effects, ViewChange)} <= {1}
    assert backup.replica.view == 1 and not backup.replica.suspecting
    vcs = [view_change(1, s) for s in (1, 2, 3)]
    backup.receive(new_view(1, vcs))
    assert (backup.replica.view, backup.replica.active) == (1, True)


def in_view_change_one() -> Node:
    """Backup 2 changing to view 1 (primary 1) with a quorum asking for it,
    so its new-view timer is armed."""
    backup = waiting_backup(me=2)
    backup.receive(suspicion(0, 3))
    backup.tick(T0 + 1_000)
    backup.receive(view_change(1, 1), view_change(1, 3))
    assert (backup.replica.view, backup.replica.active) == (1, False)
    assert backup.replica.view_change_deadline_ms is not None
    return backup


# ---------------------------------------------------------------- defect 3: adaptive request timer


def commit_height_two(backup: Node, at_ms: int) -> None:
    """Height 2 commits in view 0 while height 1 is still missing here."""
    backup.tick(at_ms)
    b = batch(2, request("other"), time_ms=at_ms)
    backup.receive(pre_prepare(0, b), prepare(0, 2, b.digest, 2))
    backup.receive(*(commit(0, 2, b.digest, s) for s in (0, 2)))
    assert backup.replica.log[2].committed and backup.replica.delivered.height == 0


def test_any_block_committed_in_the_view_restarts_the_request_timer() -> None:
    backup = waiting_backup(request_timeout_ms=2_000)
    backup.receive(suspicion(0, 3))
    # Not our request, and not deliverable yet (height 1 is missing): the
    # cluster still made progress, so the primary is working.
    commit_height_two(backup, at_ms=T0 + 1_500)

    assert sent(backup.tick(T0 + 2_000), ViewChange) == []
    assert sent(backup.tick(T0 + 3_400), ViewChange) == []


def test_the_request_timer_doubles_after_a_view_change_that_made_no_progress() -> None:
    backup = waiting_backup(me=2)
    backup.receive(suspicion(0, 3))
    backup.tick(T0 + 1_000)
    backup.receive(new_view(1, [view_change(1, s) for s in (1, 2, 3)]))
    assert (backup.replica.view, backup.replica.active) == (1, True)
    start = backup.replica.now_ms
    backup.receive(suspicion(1, 3))

    # The new primary inherits the backlog: 2 s, not 1 s, before we suspect it.
    assert sent(backup.tick(start + 1_999), ViewChange) == []
    assert [vc.new_view for vc in sent(backup.tick(start + 2_000), ViewChange)] == [2]


def test_the_request_timer_never_exceeds_max_request_timeout_ms() -> None:
    backup = waiting_backup(request_timeout_ms=2_000, max_request_timeout_ms=3_000)
    backup.receive(suspicion(0, 3))
    commit_height_two(backup, at_ms=T0 + 1_900)  # waited 1.9 s: twice is 3.8 s...

    # ...capped at 3 s after that progress.
    assert sent(backup.tick(T0 + 4_899), ViewChange) == []
    assert [vc.new_view for vc in sent(backup.tick(T0 + 4_900), ViewChange)] == [1]

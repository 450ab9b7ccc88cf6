"""The rules of PBFT (Castro & Liskov, OSDI 1999; TOCS 2002), one replica at a time.

In the style of etcd raft's paper tests: each test is named after the rule
it checks and drives a single ``Replica`` by hand, signing the other
validators' messages itself, then asserts the exact effects (or state) a
host relies on.  Unless a test says otherwise there are n = 4 validators
(f = 1, quorum 3, weak certificate 2), the view is 0 and its primary is 0,
and the replica under test is backup 1.

Every step goes through ``helpers.Node``, which also checks on the way that
no vote of the replica leaves before it was persisted.
"""

from __future__ import annotations

import pytest
from helpers import (
    CHAIN_ID,
    GENESIS_PROOF,
    GENESIS_ROOT,
    GENESIS_TIP,
    T0,
    Node,
    batch,
    broadcasts,
    certified,
    check_persist_before_send,
    checkpoint,
    checkpoint_proof,
    commit,
    commit_votes,
    delivered,
    drive_committed,
    drive_prepared,
    make_config,
    make_replica,
    new_view,
    node,
    persisted,
    persisted_votes,
    pre_prepare,
    prepare,
    prepare_votes,
    prepared_certificate,
    request,
    results_root,
    sent,
    signed,
    signer,
    suspicion,
    validator_set,
    view_change,
    without_status,
)

from consensus.blocks import GENESIS_PARENT_HASH, CommittedBlock, verify_commit_certificate
from consensus.codec import ed25519_verify
from consensus.events import (
    Broadcast,
    Effect,
    Persist,
    PreparedRecord,
    PrePrepareRecord,
    Received,
    RequestDropped,
    Send,
    StableCheckpointRecord,
    ViewRecord,
    VoteRecord,
)
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    Commit,
    ForwardedRequest,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    StateRequest,
    StateResponse,
    Status,
    ViewChange,
    sign,
)
from consensus.proofs import (
    Checker,
    checkpoint_proof_problem,
    prepared_certificate_problem,
    view_change_problem,
)
from consensus.replica import Replica

CHECKER = Checker(validator_set(4), CHAIN_ID, ed25519_verify)
SMALL_WINDOW = {"checkpoint_interval": 2, "window_size": 4}


def assert_chain(blocks: list[CommittedBlock], heights: list[int], n: int = 4) -> None:
    """Consecutive heights from genesis, each header linked to the one before,
    each certificate accepted by the offline checker."""
    assert [b.header.height for b in blocks] == heights
    previous = GENESIS_PARENT_HASH
    for block in blocks:
        assert block.header.chain_id == CHAIN_ID
        assert block.header.prev_block_hash == previous
        assert verify_commit_certificate(block.header, block.certificate, validator_set(n))
        previous = block.header.hash


def accepted_at(target: Node, height: int) -> PrePrepare | None:
    """The pre-prepare the replica's current view accepted at ``height``, if any."""
    slot = target.replica.log.get(height)
    return None if slot is None else slot.pre_prepare


def stabilize(target: Node, height: int, root: bytes | None = None) -> list[Effect]:
    """A quorum of other validators' checkpoints at ``height``."""
    root = results_root(height) if root is None else root
    senders = [s for s in range(target.replica.validators.n) if s != target.me]
    return target.receive(*(checkpoint(height, root, s) for s in senders[:3]))


# ====================================================================== normal case: pre-prepare


def test_backup_accepts_pre_prepare_in_view_and_window_and_sends_prepare() -> None:
    backup = node(1)
    b = batch(1)
    pp = pre_prepare(0, b)

    effects = backup.receive(pp)

    vote = prepare(0, 1, b.digest, 1)
    assert effects == [Persist(PrePrepareRecord(pp)), Persist(VoteRecord(vote)), Broadcast(vote)]
    assert accepted_at(backup, 1) == pp
    assert not backup.replica.dropped


def test_backup_refuses_pre_prepare_not_from_the_primary_of_its_view() -> None:
    backup = node(1)
    # Validly signed by validator 2, who is not the primary of view 0.
    effects = backup.receive(pre_prepare(0, batch(1), sender=2))

    assert effects == []
    assert backup.replica.dropped == {"pre_prepare_not_from_primary": 1}
    assert accepted_at(backup, 1) is None


def test_backup_refuses_pre_prepare_whose_signature_is_not_the_primarys() -> None:
    backup = node(1)
    forged = signed(PrePrepare(0, 1, batch(1), 0), by=2)

    assert backup.receive(forged) == []
    assert backup.replica.dropped == {"bad_signature": 1}
    assert accepted_at(backup, 1) is None


def test_backup_buffers_pre_prepare_of_a_later_view_and_accepts_it_once_in_that_view() -> None:
    backup = node(2)
    b = batch(1)
    early = pre_prepare(1, b)  # from validator 1, primary of view 1

    assert backup.receive(early) == []
    assert backup.replica.view == 0 and accepted_at(backup, 1) is None

    effects = backup.receive(new_view(1, [view_change(1, s) for s in (0, 1, 3)]))

    assert (backup.replica.view, backup.replica.active) == (1, True)
    assert persisted(effects, PrePrepareRecord) == [PrePrepareRecord(early)]
    assert sent(effects, Prepare) == [prepare(1, 1, b.digest, 2)]


def test_backup_drops_pre_prepare_of_an_earlier_view_as_stale() -> None:
    backup = node(2)
    backup.receive(new_view(1, [view_change(1, s) for s in (0, 1, 3)]))

    assert backup.receive(pre_prepare(0, batch(1))) == []
    assert backup.replica.dropped == {"stale": 1}


def test_backup_buffers_pre_prepare_beyond_the_window_and_uses_it_once_the_window_moves() -> None:
    backup = node(1, make_config(1, **SMALL_WINDOW))  # h = 0, L = 4: heights 1..4
    beyond = pre_prepare(0, batch(5))
    top = pre_prepare(0, batch(4))

    assert backup.receive(beyond) == []
    assert accepted_at(backup, 5) is None
    assert sent(backup.receive(top), Prepare) == [prepare(0, 4, top.batch.digest, 1)]

    effects = stabilize(backup, 2)  # h = 2: heights 3..6

    assert backup.replica.low_watermark == 2
    assert persisted(effects, PrePrepareRecord) == [PrePrepareRecord(beyond)]
    assert sent(effects, Prepare) == [prepare(0, 5, beyond.batch.digest, 1)]


def test_backup_drops_pre_prepare_at_or_below_the_low_watermark() -> None:
    backup = node(1, make_config(1, **SMALL_WINDOW))
    stabilize(backup, 2)

    assert backup.receive(pre_prepare(0, batch(2)), pre_prepare(0, batch(1))) == []
    assert backup.replica.dropped["stale"] == 2


def test_second_digest_for_one_view_and_height_is_equivocation_and_starts_a_view_change() -> None:
    backup = node(1)
    first = pre_prepare(0, batch(1, request("a")))
    second = pre_prepare(0, batch(1, request("b")))
    backup.receive(first)

    effects = backup.receive(second)

    vc = view_change(1, 1)
    assert effects == [
        Broadcast(first),  # the evidence, relayed
        Broadcast(second),
        Persist(ViewRecord(1, False)),
        Persist(VoteRecord(vc)),
        Broadcast(vc),
    ]
    assert (backup.replica.view, backup.replica.active) == (1, False)
    assert backup.replica.dropped == {"equivocation": 1}


def test_the_same_pre_prepare_twice_is_a_duplicate_not_equivocation() -> None:
    backup = node(1)
    pp = pre_prepare(0, batch(1))
    backup.receive(pp)

    assert backup.receive(pp) == []
    assert backup.replica.dropped == {"duplicate": 1}
    assert (backup.replica.view, backup.replica.active) == (0, True)


def test_backup_refuses_a_batch_repeating_a_request_in_flight_at_another_height() -> None:
    backup = node(1)
    r = request("x")
    backup.receive(pre_prepare(0, batch(1, r)))

    assert backup.receive(pre_prepare(0, batch(2, request("y"), r))) == []
    assert backup.replica.dropped == {"bad_batch:request_in_flight": 1}
    assert accepted_at(backup, 2) is None


def test_backup_refuses_a_batch_repeating_an_already_delivered_request() -> None:
    backup = node(1)
    r = request("x")
    assert len(delivered(drive_committed(backup, 0, batch(1, r)))) == 1

    assert backup.receive(pre_prepare(0, batch(2, r))) == []
    assert backup.replica.dropped == {"bad_batch:request_already_ordered": 1}


def test_backup_refuses_a_batch_repeating_one_request_twice() -> None:
    backup = node(1)
    r = request("x")

    assert backup.receive(pre_prepare(0, batch(1, r, r))) == []
    assert backup.replica.dropped == {"bad_batch:request_malformed_or_repeated": 1}


@pytest.mark.parametrize(("count", "reason"), [(0, "empty_carries_nothing"), (3, "size")])
def test_backup_refuses_an_empty_or_oversized_batch(count: int, reason: str) -> None:
    # An empty batch carrying nothing new (here: executed height 0 at
    # genesis) is refused; test_carrier.py has the empty batch that is not.
    backup = node(1, make_config(1, max_batch_size=2))
    b = Batch(1, tuple(request(i) for i in range(count)), T0, 0, GENESIS_ROOT)

    assert backup.receive(pre_prepare(0, b)) == []
    assert backup.replica.dropped == {f"bad_batch:{reason}": 1}


def test_backup_accepts_a_batch_of_exactly_max_batch_size() -> None:
    backup = node(1, make_config(1, max_batch_size=2))
    b = batch(1, request(0), request(1))

    assert sent(backup.receive(pre_prepare(0, b)), Prepare) == [prepare(0, 1, b.digest, 1)]


def test_backup_refuses_a_batch_with_a_request_failing_the_validity_check() -> None:
    backup = node(1, request_valid=lambda payload: not payload.startswith(b"bad"))
    bad = Request.of(b"bad transaction")

    assert backup.receive(pre_prepare(0, batch(1, request("ok"), bad))) == []
    assert backup.replica.dropped == {"bad_batch:request_invalid": 1}


def test_backup_refuses_a_batch_with_a_request_whose_payload_does_not_match_its_digest() -> None:
    backup = node(1)
    forged = Request(b"another payload", request("x").digest)

    assert backup.receive(pre_prepare(0, batch(1, forged))) == []
    assert backup.replica.dropped == {"bad_batch:request_malformed_or_repeated": 1}


@pytest.mark.parametrize(
    ("offset_ms", "accepted"),
    [(10_000, True), (10_001, False), (-10_000, True), (-10_001, False)],
)
def test_backup_refuses_a_proposer_time_outside_the_allowed_clock_skew(
    offset_ms: int, accepted: bool
) -> None:
    now = 50_000
    backup = node(1, make_config(1, max_clock_skew_ms=10_000), now_ms=now)
    b = batch(1, time_ms=now + offset_ms)

    effects = backup.receive(pre_prepare(0, b))

    if accepted:
        assert sent(effects, Prepare) == [prepare(0, 1, b.digest, 1)]
        assert not backup.replica.dropped
    else:
        assert effects == []
        assert backup.replica.dropped == {"bad_batch:clock_skew": 1}


def test_backup_refuses_a_proposer_time_before_the_previous_heights() -> None:
    backup = node(1)
    backup.receive(pre_prepare(0, batch(1, time_ms=T0 + 5)))

    assert backup.receive(pre_prepare(0, batch(2, time_ms=T0 + 4))) == []
    assert backup.replica.dropped == {"bad_batch:time_before_previous": 1}
    same_time = batch(2, time_ms=T0 + 5)
    assert sent(backup.receive(pre_prepare(0, same_time)), Prepare) == [
        prepare(0, 2, same_time.digest, 1)
    ]


def test_backup_checks_the_executed_results_root_of_a_batch_once_it_executed_that_height() -> None:
    backup = node(1)
    drive_committed(backup, 0, batch(1))
    backup.executed(1, results_root(1))
    lying = batch(2, executed_height=1, executed_root=results_root(999))

    assert backup.receive(pre_prepare(0, lying)) == []
    assert backup.replica.dropped == {"bad_batch:results_root_mismatch": 1}

    honest = batch(2, request("h2 again"), executed_height=1, executed_root=results_root(1))
    assert sent(backup.receive(pre_prepare(0, honest)), Prepare) == [
        prepare(0, 2, honest.digest, 1)
    ]


def test_backup_takes_the_executed_results_root_of_a_height_it_has_not_executed_on_trust() -> None:
    backup = node(1)
    drive_committed(backup, 0, batch(1))  # delivered, but the host has not executed it yet
    b = batch(2, executed_height=1, executed_root=results_root(999))

    assert sent(backup.receive(pre_prepare(0, b)), Prepare) == [prepare(0, 2, b.digest, 1)]


def test_backup_refuses_an_executed_height_not_below_the_batch_height() -> None:
    backup = node(1)
    b = batch(1, executed_height=1, executed_root=results_root(1))

    assert backup.receive(pre_prepare(0, b)) == []
    assert backup.replica.dropped == {"bad_batch:executed_height": 1}


# ====================================================================== normal case: the primary


def test_primary_proposes_once_max_batch_size_requests_are_waiting() -> None:
    primary = node(0, make_config(0, max_batch_size=3, batch_timeout_ms=5))
    rs = [request(i) for i in range(4)]

    assert primary.request(rs[0]) == []
    assert primary.request(rs[1]) == []
    effects = primary.request(rs[2])

    pp = pre_prepare(0, Batch(1, tuple(rs[:3]), T0, 0, GENESIS_ROOT))
    assert effects == [Persist(PrePrepareRecord(pp)), Broadcast(pp)]
    assert primary.request(rs[3]) == []  # the next batch is not full yet


def test_a_batch_stops_at_max_batch_bytes_but_always_holds_one_request() -> None:
    size = len(request(0).payload)
    primary = node(
        0, make_config(0, max_batch_size=3, max_batch_bytes=2 * size, batch_timeout_ms=5)
    )
    rs = [request(i) for i in range(3)]
    for r in rs[:2]:
        assert primary.request(r) == []
    proposals = broadcasts(primary.request(rs[2]), PrePrepare)
    # The count bound filled, the byte bound cut the batch after two requests.
    assert [p.batch.requests for p in proposals] == [tuple(rs[:2])]

    oversized = node(0, make_config(0, max_batch_size=1, max_batch_bytes=1))
    proposals = broadcasts(oversized.request(rs[0]), PrePrepare)
    assert [p.batch.requests for p in proposals] == [(rs[0],)]


def test_primary_proposes_once_the_oldest_request_has_waited_batch_timeout() -> None:
    primary = node(0, make_config(0, max_batch_size=64, batch_timeout_ms=5))
    first, second = request(1), request(2)
    primary.request(first)
    primary.tick(T0 + 3)
    primary.request(second)

    assert sent(primary.tick(T0 + 4), PrePrepare) == []
    effects = primary.tick(T0 + 5)

    pp = pre_prepare(0, Batch(1, (first, second), T0 + 5, 0, GENESIS_ROOT))
    assert sent(effects, PrePrepare) == [pp]
    assert persisted(effects, PrePrepareRecord) == [PrePrepareRecord(pp)]


def test_primary_never_proposes_a_request_twice() -> None:
    primary = node(0, make_config(0, max_batch_size=1))
    r = request(1)
    [proposal] = sent(primary.request(r), PrePrepare)

    again = (
        primary.request(r)
        + primary.receive(ForwardedRequest(r, 2), ForwardedRequest(r, 3))
        + primary.tick(T0 + 60_000)
    )
    assert sent(again, PrePrepare) == []

    assert len(delivered(drive_committed(primary, 0, proposal.batch))) == 1
    assert primary.request(r) == [RequestDropped(r.digest, "already_ordered")]
    assert sent(primary.tick(T0 + 120_000), PrePrepare) == []


def test_new_primary_does_not_propose_again_a_request_that_O_already_orders() -> None:
    new_primary = node(1, make_config(1, batch_timeout_ms=5))  # primary of view 1
    r, fresh = request("in O"), request("fresh")
    new_primary.request(r)
    b = batch(1, r)
    drive_prepared(new_primary, 0, b)
    new_primary.request(fresh)

    effects = new_primary.receive(view_change(1, 2), view_change(1, 3))
    [nv] = broadcasts(effects, NewView)
    assert [pp.batch for pp in nv.pre_prepares] == [b]
    effects = new_primary.tick(new_primary.replica.now_ms + 60_000)

    assert [(p.height, p.batch.requests) for p in sent(effects, PrePrepare)] == [(2, (fresh,))]


def test_primary_keeps_several_heights_in_flight_inside_the_window_and_none_beyond() -> None:
    primary = node(0, make_config(0, max_batch_size=1, **SMALL_WINDOW))
    proposals: list[PrePrepare] = []
    for i in range(6):
        proposals += sent(primary.request(request(i)), PrePrepare)

    # h = 0, L = 4: four heights in flight at once, none of them committed.
    assert [(p.height, p.batch.requests) for p in proposals] == [
        (h, (request(h - 1),)) for h in (1, 2, 3, 4)
    ]
    assert sent(primary.tick(T0 + 60_000), PrePrepare) == []

    # Heights 1 and 2 commit and execute, and their checkpoint becomes stable.
    for proposal in proposals[:2]:
        primary.receive(*prepare_votes(primary, 0, proposal.batch))
        primary.receive(*commit_votes(primary, 0, proposal.batch))
        primary.executed(proposal.height)
    effects = primary.receive(*(checkpoint(2, results_root(2), s) for s in (1, 2, 3)))

    assert [(p.height, p.batch.requests) for p in sent(effects, PrePrepare)] == [
        (5, (request(4),)),
        (6, (request(5),)),
    ]


# ====================================================================== normal case: prepared


def test_prepared_needs_pre_prepare_and_quorum_minus_one_matching_prepares() -> None:
    backup = node(1)
    b = batch(1)
    pp = pre_prepare(0, b)
    backup.receive(pp)  # its own prepare is one of the quorum - 1 = 2

    effects = backup.receive(prepare(0, 1, b.digest, 2))

    certificate = PreparedCertificate(pp, (prepare(0, 1, b.digest, 1), prepare(0, 1, b.digest, 2)))
    vote = commit(0, 1, b.digest, 1)
    assert effects == [
        Persist(PreparedRecord(certificate)),
        Persist(VoteRecord(vote)),
        Broadcast(vote),
    ]
    assert backup.replica.prepared_certs == {1: certificate}
    assert prepared_certificate_problem(certificate, 1, CHECKER) is None


def test_prepares_without_the_pre_prepare_do_not_make_it_prepared() -> None:
    backup = node(1)
    b = batch(1)

    assert backup.receive(prepare(0, 1, b.digest, 2), prepare(0, 1, b.digest, 3)) == []
    assert backup.replica.prepared_certs == {}


def test_prepares_that_arrive_before_the_pre_prepare_count_once_it_arrives() -> None:
    backup = node(1)
    b = batch(1)
    pp = pre_prepare(0, b)
    backup.receive(prepare(0, 1, b.digest, 2))

    effects = backup.receive(pp)

    mine = prepare(0, 1, b.digest, 1)
    vote = commit(0, 1, b.digest, 1)
    certificate = PreparedCertificate(pp, (mine, prepare(0, 1, b.digest, 2)))
    assert effects == [
        Persist(PrePrepareRecord(pp)),
        Persist(VoteRecord(mine)),
        Broadcast(mine),
        Persist(PreparedRecord(certificate)),
        Persist(VoteRecord(vote)),
        Broadcast(vote),
    ]


def test_the_primarys_prepare_does_not_count_towards_prepared() -> None:
    backup = node(1)
    b = batch(1)
    backup.receive(pre_prepare(0, b))

    # Own prepare + the primary's would be quorum - 1 if the primary counted.
    assert backup.receive(prepare(0, 1, b.digest, 0)) == []
    assert backup.replica.dropped == {"prepare_from_primary": 1}
    assert backup.replica.prepared_certs == {}


def test_duplicate_prepares_do_not_count_towards_prepared() -> None:
    n = 7  # f = 2, quorum 5: prepared needs 4 prepares from distinct backups
    backup = node(1, make_config(1, n=n))
    b = batch(1)
    d = b.digest
    backup.receive(pre_prepare(0, b, n))

    effects = backup.receive(
        prepare(0, 1, d, 2), prepare(0, 1, d, 2), prepare(0, 1, d, 3), prepare(0, 1, d, 3)
    )
    assert sent(effects, Commit) == []
    assert backup.replica.dropped == {"duplicate": 2}

    effects = backup.receive(prepare(0, 1, d, 4))
    assert sent(effects, Commit) == [commit(0, 1, d, 1)]
    [record] = persisted(effects, PreparedRecord)
    assert [p.sender for p in record.certificate.prepares] == [1, 2, 3, 4]


def test_conflicting_prepares_from_one_sender_are_dropped_and_counted() -> None:
    backup = node(1)
    b = batch(1)
    other = batch(1, request("other"))
    backup.receive(pre_prepare(0, b))

    effects = backup.receive(prepare(0, 1, other.digest, 2), prepare(0, 1, b.digest, 2))

    assert sent(effects, Commit) == []  # 2 voted for another digest first: only that vote stands
    assert backup.replica.dropped == {"conflicting_vote": 1}
    effects = backup.receive(prepare(0, 1, b.digest, 3))
    [record] = persisted(effects, PreparedRecord)
    assert [p.sender for p in record.certificate.prepares] == [1, 3]


@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_prepared_and_committed_thresholds_follow_the_quorum_for_any_n(n: int) -> None:
    # n = 5 and 6 need a quorum larger than 2f + 1 (4 of 5, 4 of 6) to stay safe.
    q = validator_set(n).quorum
    assert q == {4: 3, 5: 4, 6: 4, 7: 5}[n]
    backup = node(1, make_config(1, n=n))
    b = batch(1)
    d = b.digest
    backup.receive(pre_prepare(0, b, n))
    others_backups = list(range(2, n))

    # quorum - 1 prepares from distinct backups, its own included.
    assert (
        sent(backup.receive(*(prepare(0, 1, d, s) for s in others_backups[: q - 3])), Commit) == []
    )
    assert sent(backup.receive(prepare(0, 1, d, others_backups[q - 3])), Commit) == [
        commit(0, 1, d, 1)
    ]
    # quorum commits, its own included.
    committers = [0, *others_backups]
    assert delivered(backup.receive(*(commit(0, 1, d, s) for s in committers[: q - 2]))) == []
    [block] = delivered(backup.receive(commit(0, 1, d, committers[q - 2])))
    assert len(block.certificate) == q
    assert_chain([block], [1], n)


# ====================================================================== normal case: committed


def test_commit_certificate_needs_quorum_commits_of_one_view() -> None:
    backup = node(1)
    b = batch(1)
    d = b.digest
    other = batch(1, request("other"))
    drive_prepared(backup, 0, b)  # own commit sent: 1 of 3

    assert delivered(backup.receive(commit(0, 1, d, 2))) == []  # 2 of 3
    # Votes for another digest or for a later view do not make up the quorum.
    assert delivered(backup.receive(commit(0, 1, other.digest, 3))) == []
    assert delivered(backup.receive(commit(1, 1, d, 0))) == []

    effects = backup.receive(commit(0, 1, d, 0))

    [block] = delivered(effects)
    assert block.certificate == (commit(0, 1, d, 0), commit(0, 1, d, 1), commit(0, 1, d, 2))
    assert block.requests == b.requests
    assert block.header.batch_digest == d
    assert_chain([block], [1])
    assert backup.replica.delivered.height == 1


def test_a_quorum_of_commits_does_not_commit_a_replica_that_is_not_prepared() -> None:
    backup = node(1)
    b = batch(1)
    d = b.digest
    backup.receive(pre_prepare(0, b))

    assert delivered(backup.receive(*(commit(0, 1, d, s) for s in (0, 2, 3)))) == []

    effects = backup.receive(prepare(0, 1, d, 2))  # now prepared, and so committed at once
    [block] = delivered(effects)
    assert_chain([block], [1])
    kinds = [type(e.record if isinstance(e, Persist) else e).__name__ for e in effects]
    assert kinds == ["PreparedRecord", "VoteRecord", "Broadcast", "Deliver"]


def test_blocks_are_delivered_strictly_in_height_order() -> None:
    backup = node(1)
    b1 = batch(1, time_ms=T0)
    b2 = batch(2, time_ms=T0 + 7)
    backup.receive(pre_prepare(0, b1), pre_prepare(0, b2))

    effects = backup.receive(*prepare_votes(backup, 0, b2), *commit_votes(backup, 0, b2))
    assert delivered(effects) == []  # 2 is committed, but 1 is not
    assert backup.replica.delivered.height == 0

    effects = backup.receive(*prepare_votes(backup, 0, b1), *commit_votes(backup, 0, b1))

    blocks = delivered(effects)
    assert_chain(blocks, [1, 2])
    assert [b.requests for b in blocks] == [b1.requests, b2.requests]
    assert [b.header.time_ms for b in blocks] == [T0, T0 + 7]
    assert backup.replica.delivered.block_hash == blocks[1].header.hash


# ====================================================================== persist before send


def _sends_of_own_votes_each_after_their_persist(me: int, effects: list[Effect]) -> int:
    """Assert, inside one step, that each own vote sent was persisted before; count them."""
    count = 0
    for index, effect in enumerate(effects):
        if not isinstance(effect, Broadcast | Send):
            continue
        message = effect.message
        if not isinstance(
            message, PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView
        ):
            continue
        if message.sender != me:
            continue
        holders = [
            i
            for i, e in enumerate(effects)
            if isinstance(e, Persist)
            and (
                e.record == VoteRecord(message)  # type: ignore[arg-type]
                or e.record == PrePrepareRecord(message)  # type: ignore[arg-type]
            )
        ]
        assert holders and holders[0] < index, (index, effects)
        count += 1
    return count


def test_every_vote_is_persisted_before_it_is_sent() -> None:
    # The primary: proposal, then commit, checkpoint.
    primary = node(0, make_config(0, max_batch_size=1, **SMALL_WINDOW))
    sends = 0
    for h in (1, 2):
        steps = [primary.request(request(h))]
        b = sent(steps[0], PrePrepare)[0].batch
        steps += [primary.receive(p) for p in prepare_votes(primary, 0, b)]
        steps += [primary.receive(c) for c in commit_votes(primary, 0, b)]
        steps += [primary.executed(h)]
        sends += sum(_sends_of_own_votes_each_after_their_persist(0, s) for s in steps)
    assert sends == 2 * 2 + 1  # pre-prepare and commit per height, one checkpoint

    # A backup: prepare, commit, view change; then the new primary's new view.
    backup = node(1)
    b = batch(1)
    steps = [backup.receive(pre_prepare(0, b)), backup.receive(prepare(0, 1, b.digest, 2))]
    steps += [backup.receive(view_change(1, 2)), backup.receive(view_change(1, 3))]
    counts = [_sends_of_own_votes_each_after_their_persist(1, s) for s in steps]
    assert counts == [1, 1, 0, 2]  # prepare; commit; -; view change and new view
    assert [type(m).__name__ for m in sent(steps[-1], (ViewChange, NewView))] == [
        "ViewChange",
        "NewView",
    ]


def test_new_primary_restarted_right_after_its_new_view_resumes_that_new_view() -> None:
    new_primary = node(1)  # primary of view 1
    effects = new_primary.receive(view_change(1, 2), view_change(1, 3))
    [sent_new_view] = broadcasts(effects, NewView)
    # Crash right after the NEW-VIEW left: the disk holds what was persisted before it.
    records = []
    for effect in effects:
        if isinstance(effect, Broadcast) and effect.message == sent_new_view:
            break
        if isinstance(effect, Persist):
            records.append(effect.record)
    restored, resent = Replica.restore(
        make_config(1), signer(1), ed25519_verify, lambda _: True, GENESIS_TIP, records, T0
    )
    # It finishes entering view 1 from the NEW-VIEW on its disk and re-sends it.
    assert (restored.view, restored.active) == (1, True)
    assert sent(resent, NewView) == [sent_new_view]

    # Validators 0 and 3 never got the NEW-VIEW and keep offering their view changes.
    later = restored.step(Received(0, view_change(1, 0)))
    later += restored.step(Received(3, view_change(1, 3)))

    assert all(m == sent_new_view for m in sent(resent + later, NewView))
    assert (restored.view, restored.active) == (1, True)


def test_the_persist_before_send_check_itself_catches_a_vote_sent_first() -> None:
    vote = prepare(0, 1, batch(1).digest, 1)
    with pytest.raises(AssertionError):
        check_persist_before_send(1, [Broadcast(vote), Persist(VoteRecord(vote))], set())
    check_persist_before_send(1, [Persist(VoteRecord(vote)), Broadcast(vote)], set())


# ====================================================================== requests


def test_backup_forwards_a_client_request_to_the_primary() -> None:
    backup = node(1)
    r = request(1)

    assert backup.request(r) == [Send(0, ForwardedRequest(r, 1))]
    assert backup.replica.dropped == {}


def test_backup_starts_a_view_change_when_a_request_is_not_committed_within_request_timeout() -> (
    None
):
    backup = node(1, make_config(1, request_timeout_ms=2_000))
    backup.request(request(1))
    backup.receive(suspicion(0, 2))  # with its own, f + 1 suspect the primary

    assert without_status(backup.tick(T0 + 1_999)) == []
    effects = without_status(backup.tick(T0 + 2_000))

    vc = view_change(1, 1)
    # Its oldest waiting requests go to every peer, then the view change.
    shared = [Send(peer, ForwardedRequest(request(1), 1)) for peer in (0, 2, 3)]
    vote = [Persist(ViewRecord(1, False)), Persist(VoteRecord(vc)), Broadcast(vc)]
    assert effects == shared + vote
    assert backup.replica.dropped == {"request_timeout": 1}
    assert (backup.replica.view, backup.replica.active) == (1, False)


def test_a_request_committed_within_request_timeout_starts_no_view_change() -> None:
    backup = node(1, make_config(1, request_timeout_ms=2_000))
    r = request(1)
    backup.request(r)
    drive_committed(backup, 0, batch(1, r))

    effects = backup.tick(T0 + 60_000)

    assert sent(effects, ViewChange) == []
    assert (backup.replica.view, backup.replica.active) == (0, True)


def test_a_backlog_the_primary_is_working_through_starts_no_view_change() -> None:
    backup = node(1, make_config(1, request_timeout_ms=2_000, max_request_wait_ms=30_000))
    first, second = request(1), request(2)
    backup.request(first)
    backup.request(second)
    backup.receive(suspicion(0, 2))
    backup.tick(T0 + 1_500)
    drive_committed(backup, 0, batch(1, first))  # progress at T0 + 1,500

    # The second request is 3 s old, but the timer restarted when the first
    # executed; and since that one waited 1.5 s for progress, the timer now
    # allows twice that (3 s) before it suspects the primary.
    assert sent(without_status(backup.tick(T0 + 4_499)), ViewChange) == []
    changes = sent(without_status(backup.tick(T0 + 4_500)), ViewChange)
    assert {change.new_view for change in changes} == {1}


def test_a_request_left_waiting_while_others_execute_deposes_the_primary_eventually() -> None:
    backup = node(1, make_config(1, request_timeout_ms=2_000, max_request_wait_ms=5_000))
    starved = request(99)
    backup.request(starved)
    backup.receive(suspicion(0, 2))
    for height in range(1, 5):
        other = request(height)
        backup.request(other)
        backup.tick(T0 + height * 1_000)
        drive_committed(backup, 0, batch(height, other))
    assert backup.replica.view == 0
    changes = sent(without_status(backup.tick(T0 + 5_000)), ViewChange)
    assert {change.new_view for change in changes} == {1}


# ====================================================================== view change


def test_view_change_carries_the_stable_checkpoint_proof_and_a_prepared_certificate_per_height_above_it() -> (
    None
):
    backup = node(2, make_config(2, checkpoint_interval=2, window_size=8))
    root2 = results_root(2)
    for h in (1, 2):
        drive_committed(backup, 0, batch(h))
        backup.executed(h)
    backup.receive(checkpoint(2, root2, 0), checkpoint(2, root2, 3))
    assert backup.replica.low_watermark == 2
    b3 = batch(3, executed_height=2, executed_root=root2)
    b4 = batch(4, executed_height=2, executed_root=root2)
    drive_prepared(backup, 0, b3)
    drive_committed(backup, 0, b4)  # committed (not deliverable yet) is still prepared
    backup.receive(pre_prepare(0, batch(5)))  # accepted, not prepared

    effects = backup.receive(view_change(1, 1), view_change(1, 3))  # f + 1 ask for view 1

    [vc] = broadcasts(effects, ViewChange)
    assert vc.sender == 2 and vc.new_view == 1
    assert vc.stable == checkpoint_proof(2, root2, [0, 2, 3])
    assert checkpoint_proof_problem(vc.stable, CHECKER) is None
    assert [c.height for c in vc.prepared] == [3, 4]
    assert [c.pre_prepare.batch for c in vc.prepared] == [b3, b4]
    assert view_change_problem(vc, 8, CHECKER) is None


def test_view_change_carries_the_prepared_certificate_of_the_highest_view_it_prepared_in() -> None:
    backup = node(3)
    old = batch(1, request("old"))
    drive_prepared(backup, 0, old)
    # View 1 re-proposes the prepared batch at height 1 (O) and the replica prepares it again.
    vcs = [view_change(1, 0, prepared=[prepared_certificate(0, old)])] + [
        view_change(1, s) for s in (1, 2)
    ]
    backup.receive(new_view(1, vcs))
    backup.receive(*prepare_votes(backup, 1, old))

    effects = backup.receive(view_change(2, 0), view_change(2, 1))

    [vc] = broadcasts(effects, ViewChange)
    assert [(c.view, c.height, c.pre_prepare.batch) for c in vc.prepared] == [(1, 1, old)]


def test_one_view_change_above_is_not_enough_to_join_it() -> None:
    backup = node(1)

    assert backup.receive(view_change(3, 2)) == []
    assert (backup.replica.view, backup.replica.active) == (0, True)


def test_replica_joins_the_smallest_higher_view_once_f_plus_one_view_changes_above_its_own_arrive() -> (
    None
):
    backup = node(1)
    backup.receive(view_change(3, 2))

    effects = backup.receive(view_change(2, 3))

    vc = view_change(2, 1)
    assert effects == [Persist(ViewRecord(2, False)), Persist(VoteRecord(vc)), Broadcast(vc)]
    assert (backup.replica.view, backup.replica.active) == (2, False)


def test_a_replica_already_changing_views_joins_the_smallest_higher_view_on_f_plus_one() -> None:
    backup = node(1, make_config(1, request_timeout_ms=1_000))
    backup.request(request(1))
    backup.receive(suspicion(0, 2))
    backup.tick(T0 + 1_000)
    assert (backup.replica.view, backup.replica.active) == (1, False)

    effects = backup.receive(view_change(3, 2), view_change(2, 3))

    assert persisted(effects, ViewRecord) == [ViewRecord(2, False)]
    assert broadcasts(effects, ViewChange) == [view_change(2, 1)]


def test_new_primary_sends_new_view_once_it_holds_a_quorum_of_view_changes() -> None:
    new_primary = node(1, make_config(1, request_timeout_ms=2_000))  # primary of view 1
    new_primary.request(request(1))
    new_primary.receive(suspicion(0, 3))
    new_primary.tick(T0 + 2_000)  # its own view change for view 1
    assert new_primary.replica.view_changes == {1: view_change(1, 1)}

    assert sent(new_primary.receive(view_change(1, 2)), NewView) == []  # 2 of 3
    effects = new_primary.receive(view_change(1, 3))

    nv = new_view(1, [view_change(1, 1), view_change(1, 2), view_change(1, 3)])
    assert nv.pre_prepares == ()  # nothing prepared anywhere: O is empty
    assert effects == [Persist(VoteRecord(nv)), Broadcast(nv), Persist(ViewRecord(1, True))]
    assert (new_primary.replica.view, new_primary.replica.active) == (1, True)


# Shared by the O tests: view 2 (primary 2); height 2 prepared in views 0 and 1
# with different batches, height 4 prepared in view 0, nothing at 1 and 3.
A2 = batch(2, request("a"))
B2 = batch(2, request("b"))
C4 = batch(4, request("c"))
O_HONEST = [Batch.null(1), B2, Batch.null(3), C4]


def _view_changes_for_view_2() -> list[ViewChange]:
    return [
        view_change(2, 0, prepared=[prepared_certificate(0, A2)]),
        view_change(2, 1, prepared=[prepared_certificate(1, B2), prepared_certificate(0, C4)]),
        view_change(2, 3),
    ]


def test_a_replica_jumping_to_a_later_view_records_it_before_voting_in_it() -> None:
    backup = node(3)  # active in view 0
    nv = new_view(2, _view_changes_for_view_2())

    effects = backup.receive(nv)

    assert effects[:2] == [Persist(ViewRecord(2, False)), Persist(VoteRecord(nv))]
    # Crash right after its first PREPARE of view 2 left.
    first_vote = next(
        i
        for i, e in enumerate(effects)
        if isinstance(e, Broadcast) and isinstance(e.message, Prepare)
    )
    records = [e.record for e in effects[:first_vote] if isinstance(e, Persist)]
    restored, _ = Replica.restore(
        make_config(3), signer(3), ed25519_verify, lambda _: True, GENESIS_TIP, records, T0
    )
    # It comes back in view 2, never in view 0 where it could vote again.
    assert (restored.view, restored.active) == (2, True)
    stale = restored.step(Received(0, pre_prepare(0, batch(6))))
    assert sent(stale, Prepare) == [] and restored.dropped["stale"] == 1


def test_new_view_O_holds_the_highest_view_prepared_batch_per_height_and_null_batches_in_gaps() -> (
    None
):
    new_primary = node(2)
    vc0, vc1, _ = _view_changes_for_view_2()

    effects = new_primary.receive(vc0, vc1)  # f + 1: joins view 2, and holds a quorum with its own

    [nv] = broadcasts(effects, NewView)
    assert nv.view == 2 and nv.sender == 2
    assert [vc.sender for vc in nv.view_changes] == [2, 0, 1]
    assert [(pp.view, pp.height, pp.sender) for pp in nv.pre_prepares] == [
        (2, h, 2) for h in (1, 2, 3, 4)
    ]
    assert [pp.batch for pp in nv.pre_prepares] == O_HONEST
    assert persisted(effects, PrePrepareRecord) == [PrePrepareRecord(pp) for pp in nv.pre_prepares]
    assert (new_primary.replica.view, new_primary.replica.active) == (2, True)
    # The new primary proposes fresh batches after O.
    assert new_primary.replica.next_height == 5


def test_backup_accepts_a_valid_new_view_becomes_active_in_it_and_prepares_O() -> None:
    backup = node(3)
    nv = new_view(2, _view_changes_for_view_2())

    effects = backup.receive(nv)

    assert (backup.replica.view, backup.replica.active) == (2, True)
    assert effects[:2] == [Persist(ViewRecord(2, False)), Persist(VoteRecord(nv))]
    assert persisted(effects, PrePrepareRecord) == [PrePrepareRecord(pp) for pp in nv.pre_prepares]
    # The view is recorded as active only once all of O is on disk.
    records = [e.record for e in effects if isinstance(e, Persist)]
    active_at = records.index(ViewRecord(2, True))
    assert not any(isinstance(r, PrePrepareRecord) for r in records[active_at + 1 :])
    assert sum(isinstance(r, PrePrepareRecord) for r in records[:active_at]) == len(nv.pre_prepares)
    assert sent(effects, Prepare) == [prepare(2, b.height, b.digest, 3) for b in O_HONEST]
    # Normal operation resumes in view 2 right after O.
    fresh = batch(5)
    assert sent(backup.receive(pre_prepare(2, fresh)), Prepare) == [prepare(2, 5, fresh.digest, 3)]


def _signed_o(batches: list[Batch], view: int = 2) -> list[PrePrepare]:
    return [pre_prepare(view, b) for b in batches]


@pytest.mark.parametrize(
    "o_batches",
    [
        pytest.param(
            [Batch.null(1), Batch.null(2), Batch.null(3), C4], id="prepared-batch-dropped"
        ),
        pytest.param([Batch.null(1), batch(2, request("evil")), Batch.null(3), C4], id="replaced"),
        pytest.param([Batch.null(1), A2, Batch.null(3), C4], id="lower-view-batch-chosen"),
        pytest.param([Batch.null(1), B2, Batch.null(3)], id="last-height-dropped"),
        pytest.param([B2, Batch.null(3), C4], id="gap-not-filled"),
    ],
)
def test_backup_rejects_a_new_view_whose_O_does_not_recompute(o_batches: list[Batch]) -> None:
    backup = node(3)
    nv = new_view(2, _view_changes_for_view_2(), pre_prepares=_signed_o(o_batches))

    effects = backup.receive(nv)

    assert effects == []
    assert backup.replica.dropped == {"bad_new_view:pre_prepares_differ": 1}
    assert (backup.replica.view, backup.replica.active) == (0, True)


def test_backup_rejects_a_new_view_whose_view_changes_are_not_a_valid_quorum() -> None:
    backup = node(3)
    vc0, vc1, vc3 = _view_changes_for_view_2()
    stripped = ViewChange(
        2, vc1.stable, (), 1, vc1.signature
    )  # certificates removed, old signature
    cases = {
        "view_change_quorum": new_view(2, [vc0, vc1]),
        "invalid_view_change": new_view(2, [vc0, stripped, vc3]),
        "view_change_for_other_view": new_view(2, [vc0, vc1, view_change(3, 3)]),
    }
    for reason, nv in cases.items():
        assert backup.receive(nv) == [], reason
    not_primary = signed(NewView(2, nv.view_changes, nv.pre_prepares, 1))
    assert backup.receive(not_primary) == []

    assert backup.replica.dropped == {
        "bad_new_view:view_change_quorum": 1,
        "bad_new_view:invalid_view_change": 1,
        "bad_new_view:view_change_for_other_view": 1,
        "bad_new_view:not_from_primary": 1,
    }
    assert (backup.replica.view, backup.replica.active) == (0, True)


def test_backup_rejects_a_new_view_whose_O_carries_a_request_payload_not_matching_its_digest() -> (
    None
):
    backup = node(3)
    forged = Request(b"pay the new primary", request("b").digest)
    b2_forged = Batch(
        2, (forged,), B2.proposer_time_ms, B2.executed_height, B2.executed_results_root
    )
    assert b2_forged.digest == B2.digest  # the digest votes are cast on does not see payloads
    o = _signed_o([Batch.null(1), b2_forged, Batch.null(3), C4])
    nv = new_view(2, _view_changes_for_view_2(), pre_prepares=o)

    effects = backup.receive(nv)

    assert effects == []
    assert backup.replica.dropped == {"bad_new_view:pre_prepares_differ": 1}
    assert (backup.replica.view, backup.replica.active) == (0, True)


# ---------------------------------------------------------------------- view-change timer

TIMER = {
    "request_timeout_ms": 1_000,
    "view_change_timeout_ms": 1_000,
    "max_view_change_timeout_ms": 2_500,
}
N7 = 7  # quorum 5, f + 1 = 3; validator 6 is not the primary of views 1..5


def _timer_node() -> Node:
    subject = node(6, make_config(6, n=N7, **TIMER))
    subject.request(request("never committed"))
    subject.receive(suspicion(0, 4), suspicion(0, 5))  # f + 1 = 3 with its own
    subject.tick(T0 + 1_000)  # request timeout: its own view change for view 1
    assert (subject.replica.view, subject.replica.active) == (1, False)
    return subject


def _quorum_asks(subject: Node, view: int) -> None:
    """Four more view changes for ``view``: with its own, a quorum of 5."""
    subject.receive(*(view_change(view, s) for s in (0, 1, 2, 3)))


def _observed_timeout(subject: Node, view: int, expected_ms: int) -> None:
    """The replica leaves ``view`` exactly ``expected_ms`` after a quorum asked
    for it (two peers suspect its primary too: f + 1 = 3 with its own)."""
    subject.receive(suspicion(view, 4, active=False), suspicion(view, 5, active=False))
    start = subject.replica.now_ms
    effects = subject.tick(start + expected_ms - 1)
    assert persisted(effects, ViewRecord) == []
    assert subject.replica.view == view
    effects = subject.tick(start + expected_ms)
    assert persisted(effects, ViewRecord) == [ViewRecord(view + 1, False)]
    assert [vc.new_view for vc in persisted_votes(effects, ViewChange)] == [view + 1]


def test_view_change_timer_starts_only_once_a_quorum_asks_for_that_view() -> None:
    subject = _timer_node()
    subject.receive(*(view_change(1, s) for s in (0, 2, 3)))  # 4 of 5 with its own

    effects = subject.tick(T0 + 1_000_000)
    assert persisted(effects, ViewRecord) == []
    assert subject.replica.view == 1  # waits instead of running off alone

    subject.receive(view_change(1, 4))  # the quorum: the timer starts now
    _observed_timeout(subject, 1, 1_000)


def test_view_change_timeout_doubles_on_consecutive_failures_up_to_the_maximum() -> None:
    subject = _timer_node()
    for view, expected_ms in [(1, 1_000), (2, 2_000), (3, 2_500), (4, 2_500)]:
        _quorum_asks(subject, view)
        _observed_timeout(subject, view, expected_ms)
    assert subject.replica.view == 5


@pytest.mark.parametrize(("commit_in_view_3", "next_timeout_ms"), [(True, 1_000), (False, 2_500)])
def test_a_commit_resets_the_view_change_back_off(
    commit_in_view_3: bool, next_timeout_ms: int
) -> None:
    subject = _timer_node()
    for view, expected_ms in [(1, 1_000), (2, 2_000)]:
        _quorum_asks(subject, view)
        _observed_timeout(subject, view, expected_ms)
    # View 3 starts (its primary is 3)...
    subject.receive(new_view(3, [view_change(3, s) for s in (0, 1, 2, 3, 4)], n=N7))
    assert (subject.replica.view, subject.replica.active) == (3, True)
    if commit_in_view_3:
        b = batch(1, request("never committed"), time_ms=subject.replica.now_ms)
        assert len(delivered(drive_committed(subject, 3, b))) == 1
    # ... and is left on a request timeout: the back-offs restart only after a
    # commit (the request timer's too: three view changes without one make it 8 s).
    subject.request(request("another"))
    subject.receive(suspicion(3, 4), suspicion(3, 5))
    subject.tick(subject.replica.now_ms + (1_000 if commit_in_view_3 else 8_000))
    assert (subject.replica.view, subject.replica.active) == (4, False)
    _quorum_asks(subject, 4)
    _observed_timeout(subject, 4, next_timeout_ms)


def test_a_replica_changing_views_buffers_normal_case_messages_but_takes_checkpoints() -> None:
    backup = node(2, make_config(2, request_timeout_ms=1_000, **SMALL_WINDOW))
    backup.request(request(1))
    backup.receive(suspicion(0, 3))
    backup.tick(T0 + 1_000)
    assert (backup.replica.view, backup.replica.active) == (1, False)
    b = batch(1)

    assert backup.receive(pre_prepare(1, b), prepare(1, 1, b.digest, 3)) == []
    assert backup.replica.log == {}
    stabilize(backup, 2)
    assert backup.replica.low_watermark == 2


# ====================================================================== checkpoints


def _committed_two(config_overrides: dict[str, int] | None = None) -> Node:
    backup = node(1, make_config(1, **(config_overrides or SMALL_WINDOW)))
    for h in (1, 2):
        drive_committed(backup, 0, batch(h))
    return backup


def test_replica_persists_and_broadcasts_a_signed_checkpoint_after_executing_a_checkpoint_height() -> (
    None
):
    backup = _committed_two()

    assert backup.executed(1) == []  # not a multiple of checkpoint_interval = 2
    effects = backup.executed(2)

    vote = checkpoint(2, results_root(2), 1)
    assert effects == [Persist(VoteRecord(vote)), Broadcast(vote)]


def test_own_checkpoint_votes_are_offered_again_until_they_are_stable() -> None:
    backup = _committed_two()
    backup.executed(1)
    backup.executed(2)
    vote = checkpoint(2, results_root(2), 1)

    # Lost checkpoint votes would freeze the window for good: each heartbeat re-offers ours.
    later = backup.tick(T0 + 60_000)
    assert broadcasts(later, Checkpoint) == [vote]

    stabilize(backup, 2)
    assert broadcasts(backup.tick(T0 + 120_000), Checkpoint) == []


def test_a_peer_reporting_an_older_stable_checkpoint_is_sent_our_proof() -> None:
    backup = _committed_two()
    backup.executed(1)
    backup.executed(2)
    stabilize(backup, 2)

    effects = backup.receive(signed(Status(0, True, 0, 0, 3)))

    sends = [e for e in effects if isinstance(e, Send) and isinstance(e.message, Checkpoint)]
    assert {e.to for e in sends} == {3}
    assert [e.message for e in sends] == list(backup.replica.stable.checkpoints)


def test_our_own_message_relayed_back_to_us_is_dropped() -> None:
    backup = node(1)
    effects = backup.receive_from(2, signed(Status(0, True, 9, 0, 1)))
    assert effects == [] and backup.replica.dropped == {"from_self": 1}
    assert 1 not in backup.replica.peer_heights


def test_a_primary_that_cannot_propose_yet_hands_its_waiting_requests_to_the_backups() -> None:
    primary = node(0)
    r = request("held by the primary only")
    primary.request(r)
    stabilize(primary, 8)  # a stable checkpoint it has not caught up to
    assert primary.replica.delivered.height < primary.replica.low_watermark

    effects = primary.tick(T0 + 60_000)

    forwarded = [
        (e.to, e.message)
        for e in effects
        if isinstance(e, Send) and isinstance(e.message, ForwardedRequest)
    ]
    assert forwarded == [(peer, ForwardedRequest(r, 0)) for peer in (1, 2, 3)]
    assert sent(effects, PrePrepare) == []


def test_a_replayed_older_status_does_not_lower_a_peers_known_height() -> None:
    backup = node(1)
    fresh, old = signed(Status(0, True, 6, 0, 2)), signed(Status(0, True, 0, 0, 2))
    backup.receive(fresh)
    backup.receive(old)  # a Byzantine relay of an earlier heartbeat
    assert backup.replica.peer_heights[2] == 6


def test_a_quorum_of_matching_checkpoints_makes_it_stable_and_drops_the_log_below() -> None:
    backup = _committed_two()
    b3 = batch(3)
    drive_prepared(backup, 0, b3)
    backup.executed(1)
    backup.executed(2)
    root = results_root(2)

    effects = backup.receive(checkpoint(2, root, 0))  # 2 of 3
    assert persisted(effects, StableCheckpointRecord) == []
    assert backup.replica.low_watermark == 0

    effects = backup.receive(checkpoint(2, root, 3))

    proof = checkpoint_proof(2, root, [0, 1, 3])
    assert persisted(effects, StableCheckpointRecord) == [StableCheckpointRecord(proof)]
    assert backup.replica.stable == proof and backup.replica.low_watermark == 2
    assert sorted(backup.replica.log) == [3]
    assert sorted(backup.replica.prepared_certs) == [3]
    assert all(h > 2 for h in backup.replica.checkpoint_votes)
    # The window moved to 3..6.
    b6 = batch(6, time_ms=T0 + 1)
    assert sent(backup.receive(pre_prepare(0, b6)), Prepare) == [prepare(0, 6, b6.digest, 1)]


def test_checkpoints_with_different_results_roots_do_not_make_it_stable() -> None:
    backup = _committed_two()
    backup.executed(1)
    backup.executed(2)

    effects = backup.receive(
        checkpoint(2, results_root(999), 0), checkpoint(2, results_root(999), 3)
    )

    assert persisted(effects, StableCheckpointRecord) == []
    assert backup.replica.low_watermark == 0


def test_f_plus_one_checkpoints_above_the_executed_height_send_a_state_request() -> None:
    backup = node(1, make_config(1, **SMALL_WINDOW))
    root = results_root(4)

    assert backup.receive(checkpoint(4, root, 2)) == []  # one could be lying

    effects = backup.receive(checkpoint(4, root, 3))

    [request_sent] = sent(effects, StateRequest)
    assert (request_sent.from_height, request_sent.to_height, request_sent.sender) == (1, 4, 1)
    assert request_sent == signed(StateRequest(1, 4, 1))
    assert [e.to for e in effects if isinstance(e, Send)] != [1]


def test_a_stable_checkpoint_above_the_executed_height_sends_a_state_request() -> None:
    backup = node(3, make_config(3, **SMALL_WINDOW))
    proof = checkpoint_proof(4, results_root(4), [0, 1, 2])
    nv = new_view(1, [view_change(1, s, stable=proof) for s in (0, 1, 2)])

    effects = backup.receive(nv)

    assert persisted(effects, StableCheckpointRecord) == [StableCheckpointRecord(proof)]
    assert backup.replica.low_watermark == 4
    [request_sent] = sent(effects, StateRequest)
    assert (request_sent.from_height, request_sent.to_height) == (1, 4)


def test_one_peers_status_above_the_delivered_height_sends_it_a_state_request() -> None:
    backup = node(1)

    [ask] = sent(backup.receive(signed(Status(0, True, 6, 0, 2))), StateRequest)
    # Blocks prove themselves, so one peer's claim is enough to ask that peer.
    assert (ask.from_height, ask.to_height) == (1, 6)
    assert (
        sent(backup.receive(signed(Status(0, True, 9, 0, 3))), StateRequest) == []
    )  # one at a time


def test_a_peer_that_answers_with_nothing_is_not_asked_again_until_its_next_status() -> None:
    backup = node(1)
    backup.receive(signed(Status(0, True, 6, 0, 2)))
    backup.receive(StateResponse((), 2))
    assert backup.replica.peer_heights[2] == 0
    retry = backup.tick(T0 + 60_000)
    asked = [e.to for e in retry if isinstance(e, Send) and isinstance(e.message, StateRequest)]
    assert asked and 2 not in asked  # it tries the peers it has heard nothing against


def _certified_chain(heights: int) -> list[tuple[Batch, tuple[Commit, ...]]]:
    return [
        (b, certified(0, b, (0, 2, 3)).certificate)
        for b in (batch(h, time_ms=T0 + h) for h in range(1, heights + 1))
    ]


def _forged_certificate(kind: str, b: Batch) -> tuple[Commit, ...]:
    d = b.digest
    if kind == "below-quorum":
        return (commit(0, 1, d, 0), commit(0, 1, d, 2))
    if kind == "bad-signature":
        return (commit(0, 1, d, 0), commit(0, 1, d, 2), signed(Commit(0, 1, d, 3), by=0))
    if kind == "repeated-signer":
        return (commit(0, 1, d, 0), commit(0, 1, d, 2), commit(0, 1, d, 2))
    if kind == "two-views":
        return (commit(0, 1, d, 0), commit(0, 1, d, 2), commit(1, 1, d, 3))
    if kind == "another-batch":
        other = batch(1, request("other")).digest
        return tuple(commit(0, 1, other, s) for s in (0, 2, 3))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["below-quorum", "bad-signature", "repeated-signer", "two-views", "another-batch"]
)
def test_a_state_response_with_a_bad_certificate_is_dropped_and_counted(kind: str) -> None:
    backup = node(1)
    (b1, _), (b2, cert2) = _certified_chain(2)
    response = StateResponse(
        (CertifiedBatch(b1, _forged_certificate(kind, b1)), CertifiedBatch(b2, cert2)), 2
    )

    effects = backup.receive(response)

    assert delivered(effects) == []
    assert backup.replica.dropped == {"bad_state_response": 1}
    assert backup.replica.delivered.height == 0


def test_a_state_response_with_valid_certificates_delivers_the_blocks_in_order() -> None:
    backup = node(1)
    chain = _certified_chain(3)
    response = StateResponse(tuple(CertifiedBatch(b, c) for b, c in chain), 2)

    effects = backup.receive(response)

    blocks = delivered(effects)
    assert_chain(blocks, [1, 2, 3])
    assert [(b.requests, b.certificate) for b in blocks] == [(b.requests, c) for b, c in chain]
    assert backup.replica.delivered.height == 3
    assert not backup.replica.dropped


def test_state_transfer_end_to_end_from_checkpoints_to_delivery() -> None:
    backup = node(1, make_config(1, **SMALL_WINDOW))
    chain = _certified_chain(2)
    [ask] = sent(stabilize(backup, 2), StateRequest)
    assert (ask.from_height, ask.to_height) == (1, 2)

    effects = backup.receive(StateResponse(tuple(CertifiedBatch(b, c) for b, c in chain), 2))

    assert_chain(delivered(effects), [1, 2])
    assert backup.executed(1) == []
    assert sent(backup.executed(2), Checkpoint) == [checkpoint(2, results_root(2), 1)]


# ====================================================================== misbehaviour


def _bad_signature_messages() -> dict[str, object]:
    d = batch(1).digest
    return {
        "pre-prepare": signed(PrePrepare(0, 1, batch(1), 0), by=3),
        "prepare": signed(Prepare(0, 1, d, 2), by=3),
        "commit": signed(Commit(0, 1, d, 2), by=3),
        "checkpoint": signed(Checkpoint(8, results_root(8), 2), by=3),
        "view-change": signed(ViewChange(1, GENESIS_PROOF, (), 2), by=3),
        "new-view": signed(NewView(2, (), (), 2), by=3),
        "status": signed(Status(5, True, 10, 8, 2), by=3),
        "state-request": signed(StateRequest(1, 1, 2), by=3),
        "empty-signature": Prepare(0, 1, d, 2),
        "other-chain": signed(Prepare(0, 1, d, 2), chain_id="another-chain"),
        "prepare-replayed-as-commit": Commit(0, 1, d, 2, prepare(0, 1, d, 2).signature),
    }


@pytest.mark.parametrize("kind", list(_bad_signature_messages()))
def test_a_message_with_a_bad_signature_is_dropped_and_counted_never_raised(kind: str) -> None:
    backup = node(1)
    message = _bad_signature_messages()[kind]

    effects = backup.step(Received(2, message))  # type: ignore[arg-type]

    assert effects == []
    assert backup.replica.dropped == {"bad_signature": 1}
    assert (backup.replica.view, backup.replica.active) == (0, True)


def test_a_message_from_outside_the_validator_set_is_dropped_and_counted() -> None:
    backup = node(1)
    d = batch(1).digest
    stranger = signer(9)  # not one of the 4 validators
    events = [
        Received(9, prepare(0, 1, d, 2)),  # transport says: not a validator
        Received(-1, prepare(0, 1, d, 2)),
        Received(2, sign(Prepare(0, 1, d, 9), stranger, CHAIN_ID)),  # signed sender id unknown
        Received(2, sign(ViewChange(1, GENESIS_PROOF, (), 4), stranger, CHAIN_ID)),
    ]
    for event in events:
        assert backup.step(event) == []

    assert backup.replica.dropped == {"not_a_validator": 4}


def test_an_invalid_view_change_is_dropped_and_counted_never_raised() -> None:
    backup = node(1)
    good = prepared_certificate(0, batch(1))
    too_few = PreparedCertificate(good.pre_prepare, good.prepares[:1])
    from_its_own_view = prepared_certificate(1, batch(1))
    below_quorum_proof = checkpoint_proof(8, results_root(8), [0, 2])

    effects = backup.receive(
        view_change(1, 2, prepared=[too_few]),
        view_change(1, 3, prepared=[from_its_own_view]),
        view_change(1, 0, stable=below_quorum_proof),
    )

    assert effects == []
    assert backup.replica.dropped == {"bad_view_change": 3}
    assert backup.replica.view_changes == {}
    # The same senders' valid view changes still count afterwards (f + 1: it joins).
    assert sent(backup.receive(view_change(1, 2), view_change(1, 3)), ViewChange) == [
        view_change(1, 1)
    ]


def test_a_pre_prepare_whose_batch_is_for_another_height_is_dropped_and_counted() -> None:
    backup = node(1)

    assert backup.receive(signed(PrePrepare(0, 2, batch(1), 0))) == []
    assert backup.replica.dropped == {"bad_batch:height": 1}


def test_a_checkpoint_off_the_checkpoint_interval_is_dropped_and_counted() -> None:
    backup = node(1, make_config(1, **SMALL_WINDOW))

    assert backup.receive(*(checkpoint(3, results_root(3), s) for s in (0, 2, 3))) == []
    assert backup.replica.dropped == {"checkpoint_off_interval": 3}
    assert backup.replica.low_watermark == 0


def test_a_message_for_an_earlier_view_is_dropped_as_stale() -> None:
    backup = node(2)
    backup.receive(new_view(1, [view_change(1, s) for s in (0, 1, 3)]))
    b = batch(1)

    effects = backup.receive(
        pre_prepare(0, b), prepare(0, 1, b.digest, 3), commit(0, 1, b.digest, 0)
    )

    assert effects == []
    assert backup.replica.dropped == {"stale": 3}


def test_executed_out_of_order_raises_value_error() -> None:
    backup = node(1)
    drive_committed(backup, 0, batch(1))
    drive_committed(backup, 0, batch(2))

    with pytest.raises(ValueError):
        backup.executed(2)  # skips 1
    backup.executed(1)
    with pytest.raises(ValueError):
        backup.executed(1)  # twice
    backup.executed(2)
    with pytest.raises(ValueError):
        backup.executed(3)  # never delivered
    assert backup.replica.executed_height == 2


def test_a_replica_built_with_a_signer_that_is_not_its_validator_key_raises_value_error() -> None:
    with pytest.raises(ValueError):
        make_replica(1, signer_of=signer(2))
    with pytest.raises(ValueError):
        make_replica(1, signer_of=signer(99))


def test_a_step_with_something_that_is_not_an_event_raises_value_error() -> None:
    replica = make_replica(1, tip=GENESIS_TIP)
    with pytest.raises(ValueError):
        replica.step("not an event")  # type: ignore[arg-type]

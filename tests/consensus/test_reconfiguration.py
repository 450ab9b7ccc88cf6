"""Validator-set changes: when a change takes effect, what a replica does at
the boundary, and the simulator changing 4 -> 5 -> 7 -> 4 validators under
every fault kind."""

from __future__ import annotations

import os

import pytest
from helpers import (
    CHAIN_ID,
    GENESIS_TIP,
    T0,
    always_valid,
    batch,
    broadcasts,
    checkpoint,
    commit,
    make_config,
    pre_prepare,
    request,
    results_root,
    signer,
)

from consensus.blocks import ChainTip, certificate_problem
from consensus.codec import ShapeError, ed25519_verify
from consensus.epochs import Epoch, ValidatorHistory, effective_height
from consensus.events import (
    ClientRequest,
    Effect,
    Received,
    Record,
    StableCheckpointRecord,
    Tick,
)
from consensus.messages import CheckpointProof, Commit, Prepare, PrePrepare, ViewChange
from consensus.modes import Mode
from consensus.quorum import ValidatorSet
from consensus.replica import Replica
from consensus.sim.cluster import Cluster, SimConfig, reconfiguring, run
from consensus.sim.network import FAULT_KINDS

K, W = 4, 8


def keyed(*ids: int) -> ValidatorSet:
    return ValidatorSet(tuple(signer(i).public_key for i in ids), ids)


FOUR, FIVE = keyed(0, 1, 2, 3), keyed(0, 1, 2, 3, 4)

# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("decided", "expected"),
    [(0, 9), (1, 13), (3, 13), (4, 13), (5, 17), (12, 21)],
)
def test_a_change_takes_effect_after_the_first_checkpoint_a_window_past_its_decision(
    decided: int, expected: int
) -> None:
    # b is the first multiple of K at or above decided + W; H_eff = b + 1.
    assert effective_height(decided, K, W) == expected
    boundary = expected - 1
    assert boundary % K == 0 and boundary >= decided + W > boundary - K


def test_the_history_gives_the_set_in_force_at_each_height() -> None:
    history = ValidatorHistory.genesis(FOUR).observe(1, FOUR, K, W).observe(3, FIVE, K, W)
    assert history.through_height == 3
    assert [history.set_at(h) for h in (1, 12, 13, 100)] == [FOUR, FOUR, FIVE, FIVE]
    assert history.next_change_after(1) == 13 and history.next_change_after(13) is None
    # A height already observed changes nothing; a change to the same set is none.
    assert history.observe(2, keyed(0, 1), K, W) is history
    assert history.observe(4, FIVE, K, W).epochs == history.epochs
    # Nothing above through + W + 1 is settled: a change decided at 4 starts at 13.
    assert history.settled_through(W) == 12


def test_two_changes_reaching_one_boundary_leave_the_later_one() -> None:
    history = (
        ValidatorHistory.genesis(FOUR).observe(1, FIVE, K, W).observe(2, keyed(0, 1, 2, 4), K, W)
    )
    assert history.epochs == (Epoch(0, FOUR), Epoch(13, keyed(0, 1, 2, 4)))


def test_a_validator_id_never_names_two_keys() -> None:
    impostor = ValidatorSet((signer(9).public_key,), (2,))
    with pytest.raises(ValueError, match="names two keys"):
        ValidatorHistory((Epoch(0, FOUR), Epoch(9, impostor)))
    assert FIVE.primary(6) == 1 and keyed(0, 2, 5, 6).primary(2) == 5
    assert not keyed(0, 2, 5, 6).contains(1) and keyed(0, 2, 5, 6).key_of(5) == signer(5).public_key


def test_pruning_keeps_the_epoch_that_signed_the_stable_checkpoint() -> None:
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, FIVE)), 5)
    assert history.pruned(12).epochs == history.epochs
    assert history.pruned(13).epochs == (Epoch(13, FIVE),)
    assert sorted(history.pruned(13).members()) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- certificates


def certificate(height: int, digest: bytes, senders: tuple[int, ...]) -> list[Commit]:
    return [commit(0, height, digest, s) for s in senders]


def test_a_certificate_is_checked_against_the_set_in_force_at_its_height() -> None:
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, FIVE), Epoch(21, keyed(1, 2, 3, 4))), 12)
    digest = b"\x07" * 32
    three = certificate(12, digest, (0, 1, 2))
    assert (
        certificate_problem(12, digest, three, history.set_at(12), CHAIN_ID, ed25519_verify) is None
    )
    # Under five validators a quorum is four: the same three commits do not make it.
    three_late = certificate(13, digest, (0, 1, 2))
    problem = certificate_problem(
        13, digest, three_late, history.set_at(13), CHAIN_ID, ed25519_verify
    )
    assert problem == "3 commits, quorum is 4"
    # A removed validator's commit (0, after height 21) no longer counts.
    with_removed = certificate(21, digest, (0, 1, 2))
    problem = certificate_problem(
        21, digest, with_removed, history.set_at(21), CHAIN_ID, ed25519_verify
    )
    assert problem == "commit from unknown validator 0"
    assert (
        certificate_problem(
            21,
            digest,
            certificate(21, digest, (1, 2, 4)),
            history.set_at(21),
            CHAIN_ID,
            ed25519_verify,
        )
        is None
    )


# ---------------------------------------------------------------- the replica


def primary_with_change_at_13() -> Replica:
    """Replica 0, primary of view 0 under four validators, restarted at
    height 8; height 4 executed to a state that adds validator 4, so five
    validators order heights from 13 on."""
    config = make_config(0, checkpoint_interval=K, window_size=W, max_batch_size=1)
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, FIVE)), through_height=8)
    tip = ChainTip(8, b"\x08" * 32, T0, results_root(8))
    return Replica(config, signer(0), ed25519_verify, always_valid, tip, T0, None, history)


def proposed_heights(effects: list[Effect]) -> list[int]:
    return [p.height for p in broadcasts(effects, PrePrepare)]


def stabilize_at(replica: Replica, height: int) -> list[Effect]:
    effects: list[Effect] = []
    for sender in (1, 2, 3):
        effects += replica.step(Received(sender, checkpoint(height, results_root(height), sender)))
    return effects


def test_the_primary_proposes_nothing_past_a_change_until_the_checkpoint_before_it_is_stable() -> (
    None
):
    replica = primary_with_change_at_13()
    effects: list[Effect] = []
    for n in range(20):
        effects += replica.step(ClientRequest(request(n)))
    effects += replica.step(Tick(T0 + 10))
    assert proposed_heights(effects) == []  # the window (0, 8] is behind it
    effects = stabilize_at(replica, 8) + replica.step(Tick(T0 + 20))
    # The window is (8, 16], but 13.. belong to the next set: it stops at 12.
    assert proposed_heights(effects) == [9, 10, 11, 12]
    assert replica.in_window_epoch(12) and not replica.in_window_epoch(13)
    assert replica.validators == FOUR and replica.vote_quorum == 3


def test_a_backup_keeps_a_proposal_past_the_change_for_later() -> None:
    config = make_config(1, checkpoint_interval=K, window_size=W)
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, FIVE)), through_height=4)
    replica = Replica(
        config, signer(1), ed25519_verify, always_valid, GENESIS_TIP, T0, None, history
    )
    stabilize = [checkpoint(8, results_root(8), s) for s in (0, 2, 3)]
    for vote in stabilize:
        replica.step(Received(vote.sender, vote))
    early = replica.step(Received(0, pre_prepare(0, batch(12))))
    late = replica.step(Received(0, pre_prepare(0, batch(13))))
    assert early and not late
    assert replica.dropped["buffer_full"] == 0 and 13 not in replica.log


def test_the_window_entering_a_new_epoch_switches_quorum_and_starts_its_first_view() -> None:
    replica = primary_with_change_at_13()
    stabilize_at(replica, 8)
    effects = stabilize_at(replica, 12)
    assert replica.low_watermark == 12
    assert replica.validators == FIVE and replica.vote_quorum == 4
    # Each epoch's views start with a NEW-VIEW of its own set.
    assert replica.mode is Mode.CHANGING and replica.view == 1
    assert [vc.new_view for vc in broadcasts(effects, ViewChange)] == [1]
    assert replica.primary == FIVE.primary(1) == 1


def test_a_removed_validator_stops_voting_once_the_change_is_in_force() -> None:
    config = make_config(3, checkpoint_interval=K, window_size=W)
    without_3 = keyed(0, 1, 2, 4)
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, without_3)), through_height=4)
    replica = Replica(
        config, signer(3), ed25519_verify, always_valid, GENESIS_TIP, T0, None, history
    )
    for height in (8, 12):
        for sender in (0, 1, 2):
            replica.step(Received(sender, checkpoint(height, results_root(height), sender)))
    assert replica.low_watermark == 12 and not replica.is_member
    assert replica.active and replica.view == 0  # it does not even vote to change views
    effects = replica.step(Received(0, pre_prepare(0, batch(13))))
    assert not broadcasts(effects, Prepare) and 13 not in replica.log


def test_a_replica_restarted_inside_a_new_epoch_without_its_first_view_starts_it() -> None:
    # It crashed right after the checkpoint at 12 became stable (persisted),
    # before the view change that starts the five validators' first view.
    config = make_config(2, checkpoint_interval=K, window_size=W)
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, FIVE)), through_height=12)
    tip = ChainTip(12, b"\x0c" * 32, T0, results_root(12))
    proof = CheckpointProof(
        12, results_root(12), tuple(checkpoint(12, results_root(12), s) for s in (0, 1, 2))
    )
    records: list[Record] = [StableCheckpointRecord(proof)]
    replica, effects = Replica.restore(
        config, signer(2), ed25519_verify, always_valid, tip, records, T0, None, history
    )
    assert replica.mode is Mode.CHANGING and replica.view == 1
    assert [vc.new_view for vc in broadcasts(effects, ViewChange)] == [1]
    # Without a change of set the same records restart it active in view 0.
    fixed = ValidatorHistory.genesis(FOUR, 12)
    replica, _ = Replica.restore(
        config, signer(2), ed25519_verify, always_valid, tip, records, T0, None, fixed
    )
    assert replica.active and replica.view == 0


# ---------------------------------------------------------------- the simulator

ALL_FAULTS = frozenset(FAULT_KINDS)


def reconfiguring_failures(seeds: range) -> list[str]:
    config = reconfiguring(SimConfig(faults=ALL_FAULTS, fake_signatures=True))
    lines = []
    for seed in seeds:
        result = run(seed, config)
        if not result.ok:
            problems = "; ".join(result.safety_violations + result.liveness_failures)
            lines.append(
                f"seed {seed}: {problems[:200]} -- replay: python -m consensus.sim --seed {seed} "
                "--reconfigure --fake-signatures"
            )
    return lines


def test_joined_validators_vote_and_removed_ones_stop_counting() -> None:
    config = reconfiguring(SimConfig(fake_signatures=True))
    cluster = Cluster(1, config)
    result = cluster.run()
    assert result.ok, result.safety_violations + result.liveness_failures
    assert sorted(cluster.in_force_from) == [1, 2, 3]
    final = cluster.stages[3]
    seven_from, final_from = cluster.in_force_from[2], cluster.in_force_from[3]
    for replica_id in final:
        host = cluster.hosts[replica_id]
        signers = {
            c.sender for b in host.blocks for c in b.certificate if b.header.height >= final_from
        }
        assert signers and signers <= set(final)
    # The validators that joined (5 and 6) sign certificates under seven.
    seven_signers = {
        c.sender
        for b in cluster.hosts[final[0]].blocks
        if seven_from <= b.header.height < final_from
        for c in b.certificate
    }
    assert seven_signers & {5, 6}


@pytest.mark.slow
@pytest.mark.no_cover
def test_the_checker_reports_a_replica_that_keeps_the_first_sets_quorum() -> None:
    # Under five and seven validators its 3-vote certificates are not quorums.
    config = reconfiguring(
        SimConfig(fake_signatures=True, broken="stale_quorum", liveness_bound_ms=5_000)
    )
    violations = run(0, config).safety_violations
    assert any(v.startswith("certificate: ") and "quorum is 4" in v for v in violations)
    assert run(0, reconfiguring(SimConfig(fake_signatures=True))).ok


def test_a_reconfiguring_seed_replays_exactly() -> None:
    config = reconfiguring(SimConfig(faults=ALL_FAULTS, fake_signatures=True))
    first, second = run(7, config), run(7, config)
    assert first.trace_digest == second.trace_digest and first.heights == second.heights


# 16 seeds, every fault kind, fast signatures: about 10 s on one core.
@pytest.mark.slow
@pytest.mark.no_cover
@pytest.mark.parametrize("first", range(0, 16, 8))
def test_validator_set_changes_stay_safe_and_live_under_all_faults(first: int) -> None:
    assert reconfiguring_failures(range(first, first + 8)) == []


@pytest.mark.soak
@pytest.mark.skipif(
    not os.environ.get("PROVENET_SOAK"), reason="set PROVENET_SOAK=1 for the long soak"
)
def test_soak_validator_set_changes() -> None:
    seeds = int(os.environ.get("PROVENET_SOAK_SEEDS", "5000")) // 5
    assert reconfiguring_failures(range(30_000, 30_000 + seeds)) == []


def test_a_history_survives_its_stored_form_and_refuses_a_malformed_one() -> None:
    history = ValidatorHistory((Epoch(0, FOUR), Epoch(13, keyed(0, 2, 4, 5))), 9)
    assert ValidatorHistory.from_fields(history.to_fields()) == history
    with pytest.raises(ShapeError):
        ValidatorHistory.from_fields({"through_height": 9, "epochs": []})
    with pytest.raises(ShapeError):
        ValidatorHistory.from_fields({"through_height": 9, "epochs": [{"first_height": 0}]})

"""Crash a replica between any two effects of one height, restart it from what
it persisted, and check that it never contradicts a message it sent before.

This is the persist-before-send rule tested the hard way: the crash can fall
after a Persist and before the Broadcast it protects, or after a Broadcast
whose record was written, and the restarted replica must pick up from its
records alone.
"""

from __future__ import annotations

import pytest

from consensus.events import (
    Broadcast,
    ClientRequest,
    Effect,
    Event,
    Persist,
    PrePrepareRecord,
    Received,
    Record,
    StableCheckpointRecord,
    ViewRecord,
    VoteRecord,
)
from consensus.messages import Checkpoint, Commit, Message, NewView, Prepare, PrePrepare, ViewChange
from consensus.sim.cluster import Cluster, SimConfig, SimHost
from consensus.sim.ledger import VoteLedger

pytestmark = pytest.mark.slow


class CrashOnceCluster(Cluster):
    """Arms one crash when the target first sees the height's first input, and
    records every message the target sends, before any network fault."""

    def __init__(
        self,
        seed: int,
        config: SimConfig,
        target: int,
        after_effects: int,
        trigger: str = "height",
    ) -> None:
        super().__init__(seed, config)
        self.target = target
        self.trigger = trigger
        self.after_effects = after_effects
        self.armed = False
        self.sent_by_target: list[Message] = []
        self.unpersisted: list[Message] = []

    def kill_at(self, time_ms: int, replica_id: int, down_ms: int) -> None:
        """Crash ``replica_id`` between two steps at ``time_ms`` for ``down_ms``."""
        self.scheduler.at(time_ms, ("kill", replica_id, down_ms))

    def _handle(self, now: int, item: object) -> None:
        match item:
            case ("kill", int(replica_id), int(down_ms)):
                self.hosts[replica_id].crash()
                self.scheduler.at(now + down_ms, ("restart", replica_id))
            case _:
                super()._handle(now, item)

    def feed(self, host: SimHost, event: Event) -> None:
        starts_height = isinstance(event, ClientRequest) or (
            isinstance(event, Received) and isinstance(event.message, PrePrepare)
        )
        if host.replica_id == self.target and starts_height and self.trigger == "height":
            self._arm()
        super().feed(host, event)

    def _run_effects(self, host: SimHost, effects: list[Effect]) -> None:
        # "new_view": the step in which the target persists a NEW-VIEW (the new
        # primary sending it, or a backup accepting it), counted from its start.
        if host.replica_id == self.target and self.trigger == "new_view":
            records = [e.record for e in effects if isinstance(e, Persist)]
            if any(isinstance(r, VoteRecord) and isinstance(r.vote, NewView) for r in records):
                self._arm()
        super()._run_effects(host, effects)

    def _apply(self, host: SimHost, effect: Effect) -> list[Effect]:
        # "view_record": from the moment the target records that it changes view.
        starts_view_change = isinstance(effect, Persist) and isinstance(effect.record, ViewRecord)
        if host.replica_id == self.target and starts_view_change and self.trigger == "view_record":
            self._arm()
        return super()._apply(host, effect)

    def _arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.arm_crash(self.target, self.after_effects, restart_after_ms=250)

    def _send(self, sender: int, to: int | None, message: Message) -> None:
        if sender == self.target:
            self.sent_by_target.append(message)
            if not persisted_before_sent(self.hosts[sender].records, sender, message):
                self.unpersisted.append(message)
        super()._send(sender, to, message)


def persisted_before_sent(records: list[Record], sender: int, message: Message) -> bool:
    """Is this outgoing vote of ``sender`` already on its disk?"""
    if getattr(message, "sender", None) != sender:
        return True  # relayed evidence, or an unsigned message
    match message:
        case Checkpoint():
            # Once stable, a checkpoint vote lives on inside the persisted proof.
            return any(
                (isinstance(r, VoteRecord) and r.vote == message)
                or (isinstance(r, StableCheckpointRecord) and message in r.proof.checkpoints)
                for r in records
            )
        case Prepare() | Commit() | ViewChange() | NewView():
            return any(isinstance(r, VoteRecord) and r.vote == message for r in records)
        case PrePrepare():
            return any(
                isinstance(r, PrePrepareRecord) and r.pre_prepare == message for r in records
            )
    return True


def contradictions(sender: int, messages: list[Message]) -> list[str]:
    """Pairs of messages from ``sender`` that no honest replica may send both of."""
    ledger = VoteLedger()
    return [problem for message in messages for problem in ledger.record(sender, message)]


CONFIG = SimConfig(validators=4, faults=frozenset(), requests=4, heal_ms=2_000)


@pytest.mark.parametrize("target", [0, 2], ids=["primary", "backup"])
def test_crash_at_every_effect_boundary_of_a_height_never_equivocates(target: int) -> None:
    crashes = 0
    for after_effects in range(0, 40):
        cluster = CrashOnceCluster(
            seed=7, config=CONFIG, target=target, after_effects=after_effects
        )
        result = cluster.run()
        crashed = any("mid-step" in line for line in cluster.crash_log)
        crashes += crashed
        where = f"crash after {after_effects} effects: {cluster.crash_log}"
        assert cluster.unpersisted == [], where
        assert contradictions(target, cluster.sent_by_target) == [], where
        assert result.safety_violations == [], where
        assert result.liveness_failures == [], where
    # The crash really fell inside the height's processing many times over.
    assert crashes >= 20


def test_contradiction_check_can_fail() -> None:
    first = Prepare(0, 1, b"a" * 32, 2)
    second = Prepare(0, 1, b"b" * 32, 2)
    assert contradictions(2, [first, second]) == [
        "equivocation: replica 2 sent two different ('prepare', 0, 1)"
    ]


@pytest.mark.parametrize("trigger", ["view_record", "new_view"])
@pytest.mark.parametrize("target", [1, 2], ids=["new-primary", "backup"])
def test_crash_at_every_effect_boundary_of_a_view_change_never_equivocates(
    target: int, trigger: str
) -> None:
    """Replica 0, the first primary, crashes with heights in flight: the
    cluster changes view with a NEW-VIEW that re-proposes them, and the
    target crashes at each point of that change in turn: from just after it
    records the new view, or from the start of the step that persists the
    NEW-VIEW."""
    crashes = 0
    for after_effects in range(0, 30):
        cluster = CrashOnceCluster(7, CONFIG, target, after_effects, trigger=trigger)
        cluster.kill_at(500, replica_id=0, down_ms=2_500)
        result = cluster.run()
        crashes += any("mid-step" in line for line in cluster.crash_log)
        where = f"crash after {after_effects} effects: {cluster.crash_log}"
        assert cluster.unpersisted == [], where
        assert contradictions(target, cluster.sent_by_target) == [], where
        assert result.safety_violations == [], where
        assert result.liveness_failures == [], where
        new_view = cluster.hosts[target].replica.last_new_view  # type: ignore[union-attr]
        assert new_view is not None and new_view.pre_prepares, where
    assert crashes >= 8


class NewViewStepCrash(Cluster):
    """Crashes the first honest replica to send a NEW-VIEW that re-proposes
    requests, ``after_effects`` effects into the step that sends it."""

    def __init__(self, seed: int, config: SimConfig, after_effects: int) -> None:
        super().__init__(seed, config)
        self.after_effects = after_effects
        self.victim: int | None = None
        self.sent: dict[int, list[Message]] = {i: [] for i in range(config.validators)}

    def _run_effects(self, host: SimHost, effects: list[Effect]) -> None:
        if self.victim is None and host.replica_id not in self.plan.byzantine:
            own = [
                e.message
                for e in effects
                if isinstance(e, Broadcast)
                and isinstance(e.message, NewView)
                and e.message.sender == host.replica_id
            ]
            if own and any(pp.batch.requests for pp in own[0].pre_prepares):
                self.victim = host.replica_id
                self.arm_crash(host.replica_id, self.after_effects, restart_after_ms=250)
        super()._run_effects(host, effects)

    def _send(self, sender: int, to: int | None, message: Message) -> None:
        self.sent[sender].append(message)
        super()._send(sender, to, message)


@pytest.mark.no_cover
def test_a_new_primary_crashing_inside_its_new_view_step_never_equivocates() -> None:
    config = SimConfig(validators=4, faults=frozenset({"byzantine", "drop"}), fake_signatures=True)
    victims = 0
    for seed in range(8):
        for after_effects in range(12):
            cluster = NewViewStepCrash(seed, config, after_effects)
            result = cluster.run()
            if cluster.victim is None:
                break
            victims += 1
            where = f"seed {seed}, crash after {after_effects} effects: {cluster.crash_log}"
            assert contradictions(cluster.victim, cluster.sent[cluster.victim]) == [], where
            assert result.safety_violations == [] and result.liveness_failures == [], where
    assert victims >= 40

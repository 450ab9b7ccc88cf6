"""Crash a replica between any two effects of one height, restart it from what
it persisted, and check that it never contradicts a message it sent before.

This is the persist-before-send rule tested the hard way: the crash can fall
after a Persist and before the Broadcast it protects, or after a Broadcast
whose record was written, and the restarted replica must pick up from its
records alone.
"""

from __future__ import annotations

import pytest

from consensus.events import ClientRequest, Event, PrePrepareRecord, Received, Record, VoteRecord
from consensus.messages import Checkpoint, Commit, Message, NewView, Prepare, PrePrepare, ViewChange
from consensus.sim.cluster import Cluster, SimConfig, SimHost


class CrashOnceCluster(Cluster):
    """Arms one crash when the target first sees the height's first input, and
    records every message the target sends, before any network fault."""

    def __init__(self, seed: int, config: SimConfig, target: int, after_effects: int) -> None:
        super().__init__(seed, config)
        self.target = target
        self.after_effects = after_effects
        self.armed = False
        self.sent_by_target: list[Message] = []
        self.unpersisted: list[Message] = []

    def feed(self, host: SimHost, event: Event) -> None:
        starts_height = isinstance(event, ClientRequest) or (
            isinstance(event, Received) and isinstance(event.message, PrePrepare)
        )
        if host.replica_id == self.target and starts_height and not self.armed:
            self.armed = True
            self.arm_crash(self.target, self.after_effects, restart_after_ms=250)
        super().feed(host, event)

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
        case Prepare() | Commit() | Checkpoint() | ViewChange() | NewView():
            return any(isinstance(r, VoteRecord) and r.vote == message for r in records)
        case PrePrepare():
            return any(
                isinstance(r, PrePrepareRecord) and r.pre_prepare == message for r in records
            )
    return True


def contradictions(sender: int, messages: list[Message]) -> list[str]:
    """Pairs of messages from ``sender`` that no honest replica may send both of."""
    seen: dict[tuple[object, ...], bytes] = {}
    found = []
    for message in messages:
        if getattr(message, "sender", None) != sender:
            continue  # relayed evidence signed by someone else
        match message:
            case Prepare() | Commit():
                key: tuple[object, ...] = (message.DOMAIN, message.view, message.height)
                value = message.digest
            case PrePrepare():
                key, value = ("pre-prepare", message.view, message.height), message.batch.digest
            case Checkpoint():
                key, value = ("checkpoint", message.height), message.state_root
            case ViewChange():
                key, value = ("view-change", message.new_view), message.ident
            case NewView():
                key, value = ("new-view", message.view), message.ident
            case _:
                continue
        if seen.setdefault(key, value) != value:
            found.append(f"{key} sent with two different values")
    return found


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
        "('prepare', 0, 1) sent with two different values"
    ]

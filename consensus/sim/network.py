"""The simulated network: a seeded scheduler on a virtual clock.

Theory of operation
-------------------
Everything that happens in a simulated cluster is an entry in one priority
queue ordered by (virtual time, sequence number).  The sequence number makes
ties deterministic, and every random choice (delays, loss, duplication,
partitions, crash times) comes from one ``random.Random(seed)`` held by the
:class:`FaultPlan`, so a seed replays the same run exactly.

A message in flight is dropped when it arrives at a crashed replica, when its
link is cut by a partition at send time, or by the loss probability; it may
be duplicated, and its delay is drawn per copy, which reorders messages.
A crash strikes between two effects of a step, after a random number of
them (as SIGKILL would), and the replica restarts from its disk after the
planned downtime.  A pause stops a replica as SIGSTOP would: it keeps its
memory, but takes no message and no tick until it resumes (SIGCONT), when
everything that arrived meanwhile is handed to it at once, with a clock that
has jumped.  All faults stop at ``heal_ms``: after that the network is
reliable with short delays, no new crash or pause strikes, every crashed
replica comes back, and only Byzantine replicas misbehave.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from random import Random

# "pause" is last so that adding it left the plans of the other kinds unchanged.
FAULT_KINDS = ("drop", "dup", "reorder", "partition", "crash", "byzantine", "pause")


@dataclass(frozen=True)
class Partition:
    start_ms: int
    end_ms: int
    side: frozenset[int]

    def cuts(self, at_ms: int, a: int, b: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms and ((a in self.side) != (b in self.side))


@dataclass(frozen=True)
class Crash:
    replica: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Pause:
    """SIGSTOP at ``start_ms``, SIGCONT at ``end_ms``."""

    replica: int
    start_ms: int
    end_ms: int


@dataclass
class FaultPlan:
    """Which faults happen when, drawn once from the seed."""

    rng: Random
    heal_ms: int
    drop_per_mille: int = 0
    dup_per_mille: int = 0
    max_extra_delay_ms: int = 0
    partitions: list[Partition] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    byzantine: dict[int, str] = field(default_factory=dict)

    def link_cut(self, at_ms: int, a: int, b: int) -> bool:
        return any(p.cuts(at_ms, a, b) for p in self.partitions)

    def delays_ms(self, at_ms: int) -> list[int]:
        """Delivery delays of the copies of one message (empty: lost)."""
        if at_ms >= self.heal_ms:
            return [self.rng.randint(1, 5)]
        if self.rng.randrange(1_000) < self.drop_per_mille:
            return []
        copies = 2 if self.rng.randrange(1_000) < self.dup_per_mille else 1
        return [
            self.rng.randint(1, 5) + self.rng.randint(0, self.max_extra_delay_ms)
            for _ in range(copies)
        ]


def draw_fault_plan(
    seed: int, n: int, faults: frozenset[str], heal_ms: int, byzantine_behaviours: tuple[str, ...]
) -> FaultPlan:
    """Draw the faults of one run from its seed."""
    rng = Random(seed)
    f = (n - 1) // 3
    plan = FaultPlan(rng=Random(rng.getrandbits(64)), heal_ms=heal_ms)
    if "drop" in faults:
        plan.drop_per_mille = rng.randint(10, 200)
    if "dup" in faults:
        plan.dup_per_mille = rng.randint(20, 300)
    if "reorder" in faults:
        plan.max_extra_delay_ms = rng.randint(20, 400)
    if "byzantine" in faults and f > 0:
        for replica in rng.sample(range(n), rng.randint(1, f)):
            plan.byzantine[replica] = rng.choice(byzantine_behaviours)
    honest = [r for r in range(n) if r not in plan.byzantine]
    if "partition" in faults:
        for _ in range(rng.randint(1, 3)):
            start = rng.randint(0, heal_ms - 500)
            end = min(heal_ms, start + rng.randint(300, 3_000))
            side = frozenset(rng.sample(range(n), rng.randint(1, n // 2)))
            plan.partitions.append(Partition(start, end, side))
    if "crash" in faults:
        for _ in range(rng.randint(1, 2)):
            start = rng.randint(0, heal_ms - 500)
            end = min(heal_ms, start + rng.randint(200, 3_000))
            plan.crashes.append(Crash(rng.choice(honest), start, end))
    if "pause" in faults:
        for _ in range(rng.randint(1, 2)):
            start = rng.randint(0, heal_ms - 500)
            end = min(heal_ms, start + rng.randint(500, 4_000))
            plan.pauses.append(Pause(rng.choice(honest), start, end))
    return plan


class Scheduler:
    """A deterministic priority queue of (time, sequence, item)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, object]] = []
        self._sequence = 0
        self.now_ms = 0

    def at(self, time_ms: int, item: object) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (time_ms, self._sequence, item))

    def pop(self) -> tuple[int, object] | None:
        if not self._heap:
            return None
        time_ms, _, item = heapq.heappop(self._heap)
        self.now_ms = max(self.now_ms, time_ms)
        return time_ms, item

    def __len__(self) -> int:
        return len(self._heap)

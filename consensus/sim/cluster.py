"""A whole cluster in one process: hosts, a client, faults and the checks.

Theory of operation
-------------------
Each :class:`SimHost` plays the node's part for one replica: it carries out
effects in order, keeps the persisted records (its "disk") and the delivered
blocks (its block store), executes each delivered block (the state root is a
hash chain of block hashes, which is deterministic and sensitive to any
divergence) and serves state-transfer requests.  A crash throws away the
replica object and keeps only the disk; a restart rebuilds the replica from
it with ``Replica.restore``.

:func:`run` drives one seed: a client submits requests at random times and
re-sends those not yet delivered by f+1 honest replicas (as the SDK's retry
would), the fault plan acts until ``heal_ms``, and the run ends when every
honest replica has delivered every request or the liveness bound passes.
The checker then reports agreement violations (two honest replicas with
different blocks at one height), validity violations (a delivered request
nobody submitted), liveness failures (a request some honest replica never
delivered), uncarried results (after the run quiesces, a delivered height
with requests whose results no delivered block's executed height covers,
so no certificate certifies them: the carrier block is missing; not checked
while a Byzantine replica is the primary, which can withhold it) and
stranded replicas (an honest replica in a view fewer than
f+1 honest replicas share, for longer than ``max_stranded_ms`` after the
faults heal: it does not vote with the others, so the cluster runs without
its spare fault tolerance).  A hash of every delivery event is the run's
trace digest.

A host can be busy: ``cpu_ms_per_request`` charges it for checking each
request of a pre-prepare it receives and for executing each request it
delivers, and a pause (SIGSTOP) makes it busy until it resumes.  Messages
and ticks reaching a busy host wait, in order, until it is free, as they
would in a real node's queue; that is how a saturated primary looks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from random import Random

from consensus.blocks import ChainTip, CommittedBlock, batch_of, certificate_problem
from consensus.codec import (
    CachingVerifier,
    Ed25519Signer,
    FakeSigner,
    FakeVerifier,
    Signer,
    Verifier,
    digest,
    ed25519_verify,
)
from consensus.config import ReplicaConfig
from consensus.epochs import ValidatorHistory
from consensus.events import (
    Broadcast,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Executed,
    Persist,
    Received,
    Record,
    RequestDropped,
    Send,
    ServeBlocks,
    StableCheckpointRecord,
    Tick,
    compact,
)
from consensus.messages import (
    CertifiedBatch,
    Message,
    NewView,
    PrePrepare,
    Request,
    StateResponse,
)
from consensus.quorum import ValidatorSet
from consensus.replica import Replica, Sabotage
from consensus.sim.byzantine import BEHAVIOUR_TABLE, BEHAVIOURS, Adversary
from consensus.sim.ledger import VoteLedger
from consensus.sim.network import FaultPlan, Scheduler, draw_fault_plan
from consensus.wire import message_from_wire, message_to_wire

CHAIN_ID = "provenet-sim"
GENESIS_ROOT = digest(b"provenet-sim-genesis")


@dataclass(frozen=True)
class SimConfig:
    validators: int = 4
    faults: frozenset[str] = frozenset()
    requests: int = 24
    heal_ms: int = 6_000
    liveness_bound_ms: int = 60_000
    tick_ms: int = 20
    client_retry_ms: int = 1_500
    fake_signatures: bool = False
    broken: str | None = None
    byzantine_behaviours: tuple[str, ...] = BEHAVIOURS
    checkpoint_interval: int = 4
    window_size: int = 16
    max_batch_size: int = 8
    # Send every message through its wire form, as the node will.
    wire_round_trip: bool = True
    # CPU a host spends per request it checks in a pre-prepare or executes.
    cpu_ms_per_request: int = 0
    # An honest replica may be in a view of its own (fewer than f+1 honest
    # replicas share it) this long after the faults heal, and no longer.
    max_stranded_ms: int = 10_000
    # Change the validator set by "governance" during the run: 4 -> 5 -> 7
    # -> 4 validators (RECONFIGURATION_STAGES), each change filed once the
    # previous one has taken effect (see Cluster._reconfigure).
    reconfigure: bool = False
    # While reconfiguring, a client request every this many ms keeps
    # heights coming until the last set has ordered a few checkpoints.
    filler_interval_ms: int = 60


@dataclass
class SimResult:
    seed: int
    safety_violations: list[str]
    liveness_failures: list[str]
    trace_digest: str
    end_ms: int
    heights: dict[int, int]
    byzantine: dict[int, str]
    dropped: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.safety_violations and not self.liveness_failures


def sabotage_for(broken: str | None, validators: ValidatorSet) -> Sabotage:
    """The deliberately broken replica ``--broken`` asks for, if any."""
    match broken:
        case None:
            return Sabotage()
        case "quorum":
            # Unsafe: prepares and commits on 2f votes instead of 2f+1.
            return Sabotage(vote_quorum=2 * validators.f)
        case "new_view_check":
            # Unsafe: accepts any NEW-VIEW without checking V or O.
            return Sabotage(skip_new_view_check=True)
        case "eager_view_change":
            # Safe but careless: any expired timer of its own sends
            # VIEW-CHANGE at once, without waiting for f others to suspect
            # the primary too, so it can end up alone in a higher view.
            return Sabotage(depose_alone=True)
        case "stale_quorum":
            # Unsafe once the set grows: keeps the first set's quorum.
            return Sabotage(stale_quorum=True)
    raise ValueError(f"no such broken replica: {broken}")


@dataclass
class SimHost:
    """One replica's node: disk, block store, execution, and its replica."""

    replica_id: int
    config: ReplicaConfig
    signer: Signer
    verify: Verifier
    request_valid: Callable[[bytes], bool]
    sabotage: Sabotage
    records: list[Record] = field(default_factory=list)
    blocks: list[CommittedBlock] = field(default_factory=list)
    roots: list[bytes] = field(default_factory=lambda: [GENESIS_ROOT])
    replica: Replica | None = None
    crash_after_effects: int | None = None
    restart_after_ms: int = 0
    # Until when the host is busy (executing, or stopped by SIGSTOP).
    busy_until_ms: int = 0
    delivered_digests: set[bytes] = field(default_factory=set)
    # The validator set in this host's state (reconfiguring runs only), and
    # the history it implies, handed to the replica on every restart.
    validator_ids: tuple[int, ...] | None = None
    history: ValidatorHistory | None = None
    started: bool = False

    def tip(self) -> ChainTip:
        if not self.blocks:
            return ChainTip.genesis(GENESIS_ROOT)
        header = self.blocks[-1].header
        return ChainTip(header.height, header.hash, header.time_ms, self.roots[-1])

    def start(self, now_ms: int) -> list[Effect]:
        self.started = True
        self.replica, effects = Replica.restore(
            self.config,
            self.signer,
            self.verify,
            self.request_valid,
            self.tip(),
            self.records,
            now_ms,
            self.sabotage,
            self.history,
        )
        return effects

    def crash(self) -> None:
        self.replica = None
        self.crash_after_effects = None

    @property
    def up(self) -> bool:
        return self.replica is not None

    def execute(self, block: CommittedBlock) -> bytes:
        self.blocks.append(block)
        self.delivered_digests.update(r.digest for r in block.requests)
        root = digest(self.roots[-1] + block.header.hash)
        self.roots.append(root)
        if self.validator_ids is not None:
            for request in block.requests:
                ids = validator_ids_of(request.payload)
                if ids is not None:
                    self.validator_ids = ids
        return root

    def persist(self, record: Record) -> None:
        self.records.append(record)
        if isinstance(record, StableCheckpointRecord):
            self.records = compact(self.records)

    def serve(self, from_height: int, to_height: int) -> StateResponse:
        chosen = self.blocks[from_height - 1 : to_height]
        return StateResponse(
            tuple(CertifiedBatch(batch_of(b), b.certificate) for b in chosen), self.replica_id
        )


class Cluster:
    """n hosts on one scheduler.  See the module docstring."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        if config.reconfigure and config.validators != 4:
            raise ValueError("a reconfiguring run starts from 4 validators")
        self.seed = seed
        self.config = config
        self.scheduler = Scheduler()
        self.plan: FaultPlan = draw_fault_plan(
            seed, config.validators, config.faults, config.heal_ms, config.byzantine_behaviours
        )
        self.rng = Random(seed ^ 0x5EED)
        self._trace = digest(b"trace" + seed.to_bytes(8, "big"))
        self._trace_parts: list[bytes] = []
        signers, verify = self._keys(seed)
        self.keys = [s.public_key for s in signers]
        self.verify = verify
        validators = ValidatorSet(tuple(self.keys[: config.validators]))
        self.validators = validators
        self.submitted: dict[bytes, Request] = {}
        self.first_delivery: dict[int, bytes] = {}
        self.safety_violations: list[str] = []
        self.ledger = VoteLedger()
        # Reconfiguring runs: the sets to go through, the next stage to file,
        # and the history every honest execution agrees on (the checker's).
        self.stages = reconfiguration_stages(seed) if config.reconfigure else []
        self.next_stage = 1
        self.awaiting_stage: int | None = None
        # The first height each stage's set ordered (stage -> height).
        self.in_force_from: dict[int, int] = {}
        self.history = ValidatorHistory.genesis(validators)
        self._sets: dict[tuple[int, ...], ValidatorSet] = {}
        self.hosts = [self._host(i, signers[i], verify) for i in range(len(signers))]
        self.adversaries = {
            r: Adversary(r, len(signers), signers[r], CHAIN_ID, Random(seed * 1_000 + r))
            for r in self.plan.byzantine
        }
        self.crash_log: list[str] = []
        # Since when each honest replica has been in a view of its own.
        self.stranded_since_ms: dict[int, int] = {}
        self.stranded_failures: list[str] = []

    def _keys(self, seed: int) -> tuple[list[Signer], Verifier]:
        count = MAX_SIM_VALIDATORS if self.config.reconfigure else self.config.validators
        seeds = [digest(b"sim-key" + bytes([i])) for i in range(count)]
        if self.config.fake_signatures:
            fakes = [FakeSigner(s) for s in seeds]
            return list(fakes), FakeVerifier(fakes)
        # Keys do not depend on the seed: building them is the costly part.
        return [_ed25519_signer(s) for s in seeds], CachingVerifier(ed25519_verify, 200_000)

    def _host(self, i: int, signer: Signer, verify: Verifier) -> SimHost:
        # A validator that joins later is configured with the set it joins.
        joining = not self.validators.contains(i)
        config = ReplicaConfig(
            chain_id=CHAIN_ID,
            validators=self.set_of(self._joined_set(i)) if joining else self.validators,
            replica_id=i,
            checkpoint_interval=self.config.checkpoint_interval,
            window_size=self.config.window_size,
            max_batch_size=self.config.max_batch_size,
            batch_timeout_ms=5,
            request_timeout_ms=1_000,
            view_change_timeout_ms=1_000,
            max_view_change_timeout_ms=8_000,
            max_clock_skew_ms=5_000,
            state_transfer_timeout_ms=300,
            status_interval_ms=500,
        )
        sabotage = sabotage_for(self.config.broken, self.validators)
        host = SimHost(i, config, signer, verify, lambda p: self._request_valid(i, p), sabotage)
        if self.config.reconfigure:
            host.validator_ids = self.validators.ids
            host.history = self.history
        return host

    def _joined_set(self, replica_id: int) -> tuple[int, ...]:
        return next(stage for stage in self.stages if replica_id in stage)

    def set_of(self, ids: tuple[int, ...]) -> ValidatorSet:
        known = self._sets.get(ids)
        if known is None:
            known = self._sets[ids] = ValidatorSet(tuple(self.keys[i] for i in ids), ids)
        return known

    def _request_valid(self, replica_id: int, payload: bytes) -> bool:
        # Like a node's (node/runtime/engine.py): a request its own chain
        # already holds is not valid again.
        request_digest = digest(payload)
        if request_digest in self.hosts[replica_id].delivered_digests:
            return False
        return request_digest in self.submitted

    # ------------------------------------------------------------ driving

    def arm_crash(self, replica_id: int, after_effects: int, restart_after_ms: int) -> None:
        """Crash ``replica_id`` once it has carried out ``after_effects`` more
        effects (mid-step, between two effects), and restart it later."""
        host = self.hosts[replica_id]
        host.crash_after_effects = after_effects
        host.restart_after_ms = restart_after_ms

    def honest(self) -> list[int]:
        """The honest replicas the checks hold to account: while reconfiguring,
        those of the latest set (a removed validator is done, one not yet
        joined is still catching up and is held to account once it joins)."""
        members = self.history.latest.ids
        return [r for r in members if r not in self.plan.byzantine]

    def in_force(self) -> ValidatorSet:
        """The set ordering the next height the cluster has not delivered."""
        return self.history.set_at(max(self.first_delivery, default=0) + 1)

    def feed(self, host: SimHost, event: Event) -> None:
        if host.replica is None:
            return
        self._run_effects(host, host.replica.step(event))

    def _run_effects(self, host: SimHost, effects: list[Effect]) -> None:
        queue = list(effects)
        index = 0
        while index < len(queue):
            if host.crash_after_effects is not None:
                if host.crash_after_effects == 0:
                    now = self.scheduler.now_ms
                    self.crash_log.append(f"{now}: crash {host.replica_id} mid-step")
                    host.crash()
                    self.scheduler.at(now + host.restart_after_ms, ("restart", host.replica_id))
                    return
                host.crash_after_effects -= 1
            effect = queue[index]
            index += 1
            queue.extend(self._apply(host, effect))
            if host.replica is None:
                return

    def _apply(self, host: SimHost, effect: Effect) -> list[Effect]:
        match effect:
            case Persist(record=record):
                host.persist(record)
            case Send(to=to, message=message):
                self._send(host.replica_id, to, message)
            case Broadcast(message=message):
                self._send(host.replica_id, None, message)
            case Deliver(block=block):
                self._record_delivery(host.replica_id, block)
                self._charge(host, len(block.requests))
                root = host.execute(block)
                assert host.replica is not None
                height = block.header.height
                if host.validator_ids is None:
                    return host.replica.step(Executed(height, root))
                validators = self.set_of(host.validator_ids)
                self._observe(host, height, validators)
                return host.replica.step(Executed(height, root, validators))
            case ServeBlocks(to=to, from_height=first, to_height=last):
                self._send(host.replica_id, to, host.serve(first, last))
            case RequestDropped():
                pass
        return []

    def _send(self, sender: int, to: int | None, message: Message) -> None:
        if sender not in self.plan.byzantine:
            self.safety_violations.extend(self.ledger.record(sender, message))
        outgoing: list[tuple[int | None, Message]] = [(to, message)]
        adversary = self.adversaries.get(sender)
        if adversary is not None:
            behaviour = BEHAVIOUR_TABLE[self.plan.byzantine[sender]]
            outgoing = behaviour(adversary, to, message)
        now = self.scheduler.now_ms
        for destination, item in outgoing:
            if self.config.wire_round_trip:
                item = message_from_wire(message_to_wire(item))
            targets = (
                [destination]
                if destination is not None
                else [r for r in range(len(self.hosts)) if r != sender]
            )
            for target in targets:
                if self.plan.link_cut(now, sender, target):
                    continue
                for delay in self.plan.delays_ms(now):
                    self.scheduler.at(now + delay, ("msg", sender, target, item))

    def _record_delivery(self, replica_id: int, block: CommittedBlock) -> None:
        header = block.header
        self._trace_parts.append(
            replica_id.to_bytes(2, "big") + header.height.to_bytes(8, "big") + header.hash
        )
        if replica_id in self.plan.byzantine:
            return
        if self.config.reconfigure:
            self._check_certificate(replica_id, block)
        for request in block.requests:
            if request.digest not in self.submitted:
                self.safety_violations.append(
                    f"validity: replica {replica_id} delivered an unsubmitted request at height {header.height}"
                )
        known = self.first_delivery.setdefault(header.height, header.hash)
        if known != header.hash:
            self.safety_violations.append(
                f"agreement: replica {replica_id} delivered a different block at height {header.height}"
            )

    # ------------------------------------------------------------ reconfiguration

    def _observe(self, host: SimHost, height: int, validators: ValidatorSet) -> None:
        """Host ``host`` executed ``height`` to ``validators`` in its state."""
        interval, window = self.config.checkpoint_interval, self.config.window_size
        assert host.history is not None
        host.history = host.history.observe(height, validators, interval, window)
        if host.replica_id in self.plan.byzantine or height <= self.history.through_height:
            return
        # The first honest execution of a height speaks for all (agreement
        # is checked on its own): the checker's history, and the moment a
        # joining validator's operator starts its node.
        self.history = self.history.observe(height, validators, interval, window)
        for replica_id in self.history.latest.ids:
            joiner = self.hosts[replica_id]
            if not joiner.started:
                joiner.history = host.history
                now = self.scheduler.now_ms
                self.crash_log.append(f"{now}: validator {replica_id} starts, to join")
                self._run_effects(joiner, joiner.start(now))
                self.scheduler.at(now, ("tick", replica_id))

    def _check_certificate(self, replica_id: int, block: CommittedBlock) -> None:
        """Every delivered block is certified by the set in force at its height."""
        height = block.header.height
        validators = self.history.set_at(height)
        problem = certificate_problem(
            height,
            block.header.batch_digest,
            block.certificate,
            validators,
            CHAIN_ID,
            self.verify,
        )
        if problem is not None:
            self.safety_violations.append(
                f"certificate: replica {replica_id} delivered height {height}, which the "
                f"set in force there {validators.ids} does not certify: {problem}"
            )
        stage = self.awaiting_stage
        if stage is not None and validators == self.set_of(self.stages[stage]):
            self.in_force_from[stage] = height
            self.awaiting_stage = None
            if stage + 1 < len(self.stages):
                delay_ms = self.rng.randint(0, 300)
                self.scheduler.at(self.scheduler.now_ms + delay_ms, ("reconfigure", stage + 1))

    def _file_stage(self, now: int, stage: int) -> None:
        """Governance decides the next set: a request that sets it when executed."""
        ids = ",".join(str(i) for i in self.stages[stage])
        request = Request.of(f"validators {ids} stage {stage} seed {self.seed}".encode())
        self.submitted[request.digest] = request
        self.awaiting_stage = stage
        self.crash_log.append(f"{now}: file validator set {self.stages[stage]}")
        self._submit(now, request)

    def reconfigured(self) -> bool:
        """Every stage took effect and the last set ordered two checkpoints' worth."""
        last = len(self.stages) - 1
        if last < 1:
            return True
        first = self.in_force_from.get(last)
        if first is None:
            return False
        reach = first + 2 * self.config.checkpoint_interval
        return max(self.first_delivery, default=0) >= reach

    # ------------------------------------------------------------ the run

    def schedule(self) -> None:
        for host in self.hosts:
            if self.validators.contains(host.replica_id):
                self._run_effects(host, host.start(0))
                self.scheduler.at(0, ("tick", host.replica_id))
        if self.stages:
            first_ms = self.rng.randint(0, self.config.heal_ms // 4)
            self.scheduler.at(first_ms, ("reconfigure", 1))
            self.scheduler.at(0, ("filler", 0))
        for i in range(self.config.requests):
            payload = f"seed {self.seed} request {i}".encode()
            request = Request.of(payload)
            self.submitted[request.digest] = request
            self.scheduler.at(self.rng.randint(0, self.config.heal_ms - 1), ("submit", request))
        for crash in self.plan.crashes:
            duration_ms = crash.end_ms - crash.start_ms
            self.scheduler.at(crash.start_ms, ("crash", crash.replica, duration_ms))
        for pause in self.plan.pauses:
            self.scheduler.at(pause.start_ms, ("pause", pause.replica, pause.end_ms))
        self.scheduler.at(self.config.heal_ms, ("heal",))

    def delivered_everywhere(self) -> bool:
        for replica_id in self.honest():
            host = self.hosts[replica_id]
            if not host.up:
                return False
            if len(host.delivered_digests) < len(self.submitted):
                return False
        return True

    def uncarried(self) -> list[str]:
        """Honest replicas holding a height with requests that no delivered
        block carries (none while a Byzantine replica leads their view)."""
        found = []
        for replica_id in self.honest():
            host = self.hosts[replica_id]
            if host.replica is None or self.validators.primary(host.replica.view) in (
                self.plan.byzantine
            ):
                continue
            carried = max((b.header.executed_height for b in host.blocks), default=0)
            last = max((b.header.height for b in host.blocks if b.requests), default=0)
            if last > carried:
                found.append(
                    f"uncarried: replica {replica_id} delivered height {last} with requests "
                    f"but its blocks carry executed heights up to {carried} only"
                )
        return found

    def run(self) -> SimResult:
        self.schedule()
        deadline = self.config.heal_ms + self.config.liveness_bound_ms
        next_check = self.config.heal_ms
        while True:
            popped = self.scheduler.pop()
            if popped is None or popped[0] > deadline:
                break
            now, item = popped
            self._trace_parts.append(repr((now, _describe(item))).encode())
            self._handle(now, item)
            if now >= next_check:
                next_check = now + 100
                stranded = self._check_stranded(now)
                if self.stranded_failures or (
                    self.delivered_everywhere()
                    and not self.uncarried()
                    and not stranded
                    and self.reconfigured()
                ):
                    break
        return self._result()

    def _check_stranded(self, now: int) -> list[int]:
        """The honest replicas in a view of their own now; records a failure
        for one that has been so for longer than max_stranded_ms after heal."""
        up = [self.hosts[r] for r in self.honest() if self.hosts[r].replica is not None]
        views = [h.replica.view for h in up if h.replica is not None]
        stranded = [
            h.replica_id
            for h in up
            if h.replica is not None and views.count(h.replica.view) < self.in_force().weak
        ]
        for replica_id in list(self.stranded_since_ms):
            if replica_id not in stranded:
                del self.stranded_since_ms[replica_id]
        for replica_id in stranded:
            since = self.stranded_since_ms.setdefault(replica_id, max(now, self.config.heal_ms))
            if now - since > self.config.max_stranded_ms:
                replica = self.hosts[replica_id].replica
                assert replica is not None
                self.stranded_failures.append(
                    f"stranded: replica {replica_id} alone in view {replica.view} "
                    f"(active {replica.active}) from {since}ms to {now}ms"
                )
        return stranded

    def _busy(self, host: SimHost, now: int, item: object) -> bool:
        """A busy host takes the item once it is free (in arrival order)."""
        if host.busy_until_ms <= now or host.replica is None:
            return False
        self.scheduler.at(host.busy_until_ms, item)
        return True

    def _charge(self, host: SimHost, requests: int) -> None:
        if self.config.cpu_ms_per_request and requests:
            start = max(host.busy_until_ms, self.scheduler.now_ms)
            host.busy_until_ms = start + requests * self.config.cpu_ms_per_request

    def _handle(self, now: int, item: object) -> None:
        match item:
            case ("tick", int(replica_id)):
                host = self.hosts[replica_id]
                if self._busy(host, now, item):
                    return
                self.feed(host, Tick(now))
                self.scheduler.at(now + self.config.tick_ms, ("tick", replica_id))
            case ("msg", int(sender), int(target), message):
                host = self.hosts[target]
                if self._busy(host, now, item):
                    return
                self.feed(host, Received(sender, message))  # type: ignore[arg-type]
                self._charge(host, _requests_to_check(message))
            case ("pause", int(replica_id), int(end_ms)):
                host = self.hosts[replica_id]
                if host.replica is not None:
                    self.crash_log.append(f"{now}: pause {replica_id} until {end_ms}")
                    host.busy_until_ms = max(host.busy_until_ms, end_ms)
            case ("submit", Request() as request):
                self._submit(now, request)
            case ("client", int(replica_id), Request() as request):
                host = self.hosts[replica_id]
                if not self._busy(host, now, item) and self._new_to(host, request):
                    self.feed(host, ClientRequest(request))
            case ("crash", int(replica_id), int(duration_ms)):
                # A crash falls between two effects of a step, as SIGKILL
                # would: after a random number of the effects that follow.
                host = self.hosts[replica_id]
                if host.up and host.crash_after_effects is None:
                    self.arm_crash(replica_id, self.rng.randrange(16), duration_ms)
            case ("heal",):
                for host in self.hosts:
                    host.crash_after_effects = None
            case ("restart", int(replica_id)):
                self._restart(now, replica_id)
            case ("reconfigure", int(stage)):
                self._file_stage(now, stage)
            case ("filler", int(count)):
                if not self.reconfigured():
                    payload = f"seed {self.seed} filler {count}".encode()
                    request = Request.of(payload)
                    self.submitted[request.digest] = request
                    self._submit(now, request)
                    self.scheduler.at(now + self.config.filler_interval_ms, ("filler", count + 1))

    def _submit(self, now: int, request: Request) -> None:
        # A request reaching a busy host waits in its queue like a message.
        delivered_by = sum(
            1 for r in self.honest() if request.digest in self.hosts[r].delivered_digests
        )
        if delivered_by >= self.in_force().weak:
            return
        for host in self.hosts:
            cut = self.plan.link_cut(now, -1, host.replica_id)
            if cut or not self._new_to(host, request):
                continue
            if not self._busy(host, now, ("client", host.replica_id, request)):
                self.feed(host, ClientRequest(request))
        self.scheduler.at(now + self.config.client_retry_ms, ("submit", request))

    @staticmethod
    def _new_to(host: SimHost, request: Request) -> bool:
        """A node answers a transaction its chain holds from its store and
        never hands it to its replica again (node/api/routes.py ``accept``):
        a replica restarted from disk has forgotten which requests its chain
        ordered, and would propose one again, for the others to refuse."""
        return request.digest not in host.delivered_digests

    def _restart(self, now: int, replica_id: int) -> None:
        host = self.hosts[replica_id]
        if host.up:
            return
        self.crash_log.append(f"{now}: restart {replica_id}")
        self._run_effects(host, host.start(now))

    def _result(self) -> SimResult:
        liveness: list[str] = []
        for replica_id in self.honest():
            host = self.hosts[replica_id]
            missing = len(self.submitted.keys() - host.delivered_digests)
            if missing or not host.up:
                liveness.append(f"liveness: replica {replica_id} is missing {missing} requests")
        liveness.extend(self.stranded_failures)
        if not liveness:
            liveness.extend(self.uncarried())
        for stage in range(1, len(self.stages)):
            if stage not in self.in_force_from:
                liveness.append(
                    f"liveness: validator set {self.stages[stage]} (stage {stage}) "
                    "never ordered a block"
                )
        dropped: dict[str, int] = {}
        for host in self.hosts:
            if host.replica is not None:
                for reason, count in host.replica.dropped.items():
                    dropped[reason] = dropped.get(reason, 0) + count
        trace = digest(self._trace + b"".join(self._trace_parts)).hex()[:16]
        return SimResult(
            seed=self.seed,
            safety_violations=self.safety_violations,
            liveness_failures=liveness,
            trace_digest=trace,
            end_ms=self.scheduler.now_ms,
            heights={h.replica_id: len(h.blocks) for h in self.hosts},
            byzantine=dict(self.plan.byzantine),
            dropped=dropped,
        )


# Reconfiguring runs use up to this many validators (ids 0..6).
MAX_SIM_VALIDATORS = 7


def reconfiguring(config: SimConfig) -> SimConfig:
    """``config`` changing the validator set during the run, with a window
    of two checkpoints so each change takes effect within a dozen heights."""
    return replace(config, reconfigure=True, window_size=2 * config.checkpoint_interval)


def reconfiguration_stages(seed: int) -> list[tuple[int, ...]]:
    """The validator sets a reconfiguring run goes through: 4 -> 5 -> 7 -> 4,
    the last four drawn from the seed (so genesis validators get removed too)."""
    final = tuple(sorted(Random(seed ^ 0xC0FFEE).sample(range(MAX_SIM_VALIDATORS), 4)))
    return [(0, 1, 2, 3), (0, 1, 2, 3, 4), (0, 1, 2, 3, 4, 5, 6), final]


def validator_ids_of(payload: bytes) -> tuple[int, ...] | None:
    """The set a governance request of the simulator decides, if it is one."""
    if not payload.startswith(b"validators "):
        return None
    ids = payload.split(b" ")[1]
    return tuple(int(part) for part in ids.split(b","))


def _requests_to_check(message: object) -> int:
    """Requests a replica checks on receiving ``message`` (its CPU cost)."""
    match message:
        case PrePrepare():
            return len(message.batch.requests)
        case NewView():
            return sum(len(p.batch.requests) for p in message.pre_prepares)
    return 0


def _describe(item: object) -> object:
    match item:
        case ("msg", sender, target, message):
            return (
                "msg",
                sender,
                target,
                type(message).__name__,
                getattr(message, "height", None),
                getattr(message, "view", None),
            )
        case ("submit", Request() as request):
            return ("submit", request.digest.hex()[:8])
        case ("client", replica_id, Request() as request):
            return ("client", replica_id, request.digest.hex()[:8])
    return item


_SIGNER_CACHE: dict[bytes, Ed25519Signer] = {}


def _ed25519_signer(seed: bytes) -> Ed25519Signer:
    signer = _SIGNER_CACHE.get(seed)
    if signer is None:
        signer = _SIGNER_CACHE[seed] = Ed25519Signer.from_seed(seed)
    return signer


def run(seed: int, config: SimConfig) -> SimResult:
    """Run one seed; any exception escaping a replica is a safety violation."""
    cluster = Cluster(seed, config)
    try:
        return cluster.run()
    except AssertionError as error:  # InvariantViolation included.
        result = cluster._result()
        result.safety_violations.append(f"invariant: {error}")
        return result

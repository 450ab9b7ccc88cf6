"""Fault campaign harness: node processes, an SDK workload, a history checker, a report.

A scenario is what an unlucky operator does to a running network while its
participants keep sending: kill -9 a validator, stop one with SIGSTOP, cut
the network.  This module provides everything around the fault, so a
scenario is a few lines (see ``test_process_faults.py``)::

    async with ProcessNetwork.create(tmp_path, validators=4) as net:
        campaign = Campaign("kill9-primary", net, WorkloadPlan(rate_tx_s=20))
        await campaign.start()
        await campaign.run_for(3)
        victim = await net.primary()
        fault = campaign.faults.begin("kill9", victim)
        net.kill9(victim)
        await campaign.wait_commit_after(fault)          # liveness, bounded
        await net.restart(victim)
        campaign.faults.heal(fault)
        await campaign.wait_caught_up(fault)             # the victim catches up
        report = await campaign.finish()                 # stop, converge, check
    report.assert_ok()                                   # lost == 0, one chain, live

The pieces, each usable alone:

:class:`ProcessNetwork`
    A network directory written by ``provenet net init`` (``create`` runs
    it with ports from ``netfixture.free_base_port``, or open an existing
    directory).  Each node is its own ``provenet node run --config FILE``
    process, the command an operator (and ``deploy/``) runs, started in its
    own session with its output appended to ``nodes/<name>/node.log``.
    ``kill9``, ``pause`` (SIGSTOP), ``resume`` (SIGCONT) and ``restart``
    act on one node by name; ``close`` (also on leaving ``async with``)
    resumes and stops every process this object started, by pid, whatever
    happened.  ``launcher`` wraps the command, so a node can run in a
    network namespace (``lambda entry: ["ip", "netns", "exec", ns(entry)]``);
    the harness reaches each node at the ``api_url`` of ``network.json``.

:class:`Workload`
    Several senders (organisations with the ``supplier`` role, so every
    ``food.harvest`` they send succeeds), each with its own
    :class:`~node.sdk.ProvenetClient` preferring a different validator,
    sign and submit at ``rate_tx_s`` in total, pipelined: each keeps up to
    ``window`` transactions in flight, waiting for each commit through the
    SDK.  Every acknowledged transaction (committed and its receipt's
    proof verified by the SDK, "ok" or "rejected") is recorded as an
    :class:`Ack` with sender, nonce, submit and ack times, height and
    block hash; every failure by its error code.  Per sender it yields the
    longest wait between two acks (from the start, and up to the moment
    the load stopped).

:class:`StatusMonitor`
    Polls every node's ``GET /v1/status`` (height, view, block hash) a few
    times a second, each with a short timeout so a stopped node does not
    hold up the others; recovery and final views are computed from these
    samples.

:class:`FaultLog` and :func:`recovery`
    ``begin`` marks a fault on some nodes, ``heal`` the moment it ended
    (restart done, SIGCONT sent, link restored).  Per fault the report has
    the seconds from the fault (and from the heal) to the first commit of a
    transaction submitted after it, to every node reaching the height the
    highest node had at the heal, and to every validator reporting one
    view.

:func:`check_history`
    After the load stops: waits (bounded) until every node reports one
    height, block hash and state root, reads every node's whole chain
    (``GET /v1/blocks``), checks the block hashes agree at every height,
    and looks up every acknowledged transaction in every node's ledger, at
    the height and in the block the SDK's proof named, with the same
    result.  An acknowledged transaction missing anywhere is *lost*.

:class:`FaultReport`
    acknowledged, lost, recovery per fault, the longest any sender waited,
    the final view and height of every node, error counts, and the
    tracebacks found in node logs; ``print_line`` prints it as one JSON line
    prefixed ``FAULT_REPORT`` (and appends it to ``$PROVENET_FAULT_REPORTS``
    when set), ``assert_ok`` checks lost == 0, one chain, one final view,
    no traceback in any node log, and liveness: commits resumed after every
    fault and no sender waited longer than ``sender_wait_bound_s`` beyond
    the scenario's declared outage.  These bounds are correctness bounds
    (a wedged sender, a stranded replica), set far above what a healthy
    network needs; they are not performance targets.

Everything sends only to the URLs in ``network.json`` (127.0.0.1 for a
network from ``create``), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any

from netfixture import REPO, init_local_network

from node.ops.netctl import node_command
from node.sdk import ProvenetClient
from node.sdk.errors import ProofError, ProvenetError
from node.sdk.network_file import Network, NodeEntry, read_network
from node.sdk.transport import NodeFailed, Reply, RetryPolicy, Transport

# Organisations of `net init`'s catalog with the supplier role: food.harvest
# from any of them commits "ok", so every acknowledged transaction is a success.
SUPPLIERS = ("farm", "miner", "bw-trader")
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
STATUS_TIMEOUT_S = 1.0
HEALTH_TIMEOUT_S = 2.0
# The longest one harness request may take (a page of blocks); each call
# bounds its own wait below this.
REQUEST_TIMEOUT_S = 30.0
MONITOR_INTERVAL_S = 0.25
# A polling round asks every node at once, each bounded by STATUS_TIMEOUT_S.
ROUND_TIMEOUT_S = 3 * (MONITOR_INTERVAL_S + STATUS_TIMEOUT_S)
# Liveness bounds: a correctness bound far above a healthy recovery (about a
# view-change timeout plus a restart), below the 30 s nonce_gap_timeout_ms
# wedge plus the SDK's 10 s request timeout that a stuck sender shows.
COMMIT_RESUME_BOUND_S = 60.0
CATCH_UP_BOUND_S = 90.0
SENDER_WAIT_BOUND_S = 40.0
CONVERGE_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 60.0
BLOCKS_PAGE = 100
REPORT_PREFIX = "FAULT_REPORT"
REPORT_FILE_ENV = "PROVENET_FAULT_REPORTS"


def now_s() -> float:
    return time.monotonic()


# ------------------------------------------------------------------ processes


Launcher = Callable[[NodeEntry], list[str]]


_EPOCH_KEYS = ("checkpoint_interval", "window_size")


class ProcessNetwork:
    """Every node of a network directory as its own ``provenet node run`` process."""

    def __init__(self, directory: Path, launcher: Launcher | None = None) -> None:
        self.network: Network = read_network(directory)
        self.launcher = launcher
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self._transport: Transport | None = None
        self._ssl: Any = None

    @classmethod
    def create(
        cls,
        parent: Path,
        validators: int = 4,
        observers: int = 0,
        tls: bool = True,
        limits: dict[str, int] | None = None,
        consensus: dict[str, int] | None = None,
        launcher: Launcher | None = None,
    ) -> ProcessNetwork:
        """``provenet net init`` a network under ``parent`` (ports outside the
        ephemeral range); ``limits``/``consensus`` override every node's config."""
        directory = init_local_network(parent, validators, observers, tls)
        # The epoch rules are chain-wide (genesis.json epoch_rules): every
        # node, observers too, must be configured with genesis's.
        epoch = {k: v for k, v in (consensus or {}).items() if k in _EPOCH_KEYS}
        if epoch:
            genesis = directory / "genesis.json"
            written = json.loads(genesis.read_text())
            written["epoch_rules"] = {**written.get("epoch_rules", {}), **epoch}
            epoch = written["epoch_rules"]
            genesis.write_text(json.dumps(written, indent=2))
        if limits or consensus:
            for entry in read_network(directory).nodes:
                document = json.loads(entry.config.read_text())
                document["limits"] = {**document.get("limits", {}), **(limits or {})}
                own = consensus if entry.role == "validator" else epoch
                if own:
                    document["consensus"] = {**document.get("consensus", {}), **own, **epoch}
                entry.config.write_text(json.dumps(document, indent=2))
        return cls(directory, launcher)

    # ---- who is who

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.network.nodes]

    @property
    def validators(self) -> list[str]:
        return [e.name for e in self.network.nodes if e.role == "validator"]

    @property
    def observers(self) -> list[str]:
        return [e.name for e in self.network.nodes if e.role == "observer"]

    def entry(self, name: str) -> NodeEntry:
        return self.network.node(name)

    def api_url(self, name: str) -> str:
        return self.entry(name).api_url

    def name_of_replica(self, replica_id: int) -> str:
        return next(e.name for e in self.network.nodes if e.replica_id == replica_id)

    def ssl(self) -> Any:
        # One context for the object's life: aiohttp pools connections per
        # context, so a fresh one per request would open a new connection
        # each time and leave the old ones idle, until the node's
        # per-address connection cap sheds the harness's own requests.
        if self._ssl is None:
            context = self.network.ssl_context()
            self._ssl = context if context is not None else False
        return self._ssl

    def client(self, org_id: str, node: str | None = None) -> ProvenetClient:
        return ProvenetClient.from_network_dir(self.network.root, org_id=org_id, node=node)

    # ---- processes

    def command(self, name: str) -> list[str]:
        entry = self.entry(name)
        prefix = self.launcher(entry) if self.launcher is not None else []
        return [*prefix, *node_command(entry)]

    def start(self, name: str) -> int:
        """Start one node's process (not waiting for it); its pid."""
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"{name} is already running as pid {running.pid}")
        entry = self.entry(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with entry.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.command(name),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=entry.directory,
                env=env,
                start_new_session=True,
            )
        self.processes[name] = process
        self.paused.discard(name)
        return process.pid

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def kill9(self, name: str) -> None:
        """SIGKILL one node and reap it."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_GRACE_S)
        self.paused.discard(name)

    def pause(self, name: str) -> None:
        """SIGSTOP one node: it holds its sockets and answers nothing."""
        self.processes[name].send_signal(signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)
        self.paused.discard(name)

    async def restart(self, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start a node that was killed and wait until it answers /healthz."""
        self.start(name)
        await self.wait_healthy([name], timeout_s)

    async def start_all(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every node, the validators first, as an operator does.

        An observer started with its validators begins on whichever of them
        answers first, so which source it follows would be a matter of timing;
        started once they answer, it begins on its first configured source.
        """
        for name in self.validators:
            self.start(name)
        await self.wait_healthy(self.validators, timeout_s)
        for name in self.observers:
            self.start(name)
        await self.wait_healthy(self.observers, timeout_s)

    async def wait_healthy(self, names: Sequence[str], timeout_s: float = START_TIMEOUT_S) -> None:
        """Every named node answers /healthz as itself; fail with its log tail if it died."""
        pending = list(names)
        deadline = now_s() + timeout_s
        while pending:
            for name in list(pending):
                if not self.alive(name):
                    raise AssertionError(f"{name} exited:\n{self.log_tail(name)}")
                if await self._healthy(name):
                    pending.remove(name)
            if pending and now_s() > deadline:
                tails = "\n".join(f"--- {n}\n{self.log_tail(n)}" for n in pending)
                raise AssertionError(f"not healthy after {timeout_s} s: {pending}\n{tails}")
            if pending:
                await asyncio.sleep(0.2)

    async def _healthy(self, name: str) -> bool:
        try:
            reply = await self.get(name, "/healthz", HEALTH_TIMEOUT_S)
        except (NodeFailed, OSError, TimeoutError):
            return False
        body = reply.json()
        return reply.status == 200 and isinstance(body, dict) and body.get("node") == name

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(
                self.entry(name).log_file.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no log)"

    def log_tracebacks(self) -> dict[str, list[str]]:
        """Per node, the line before each ``Traceback`` in its log (what raised, where)."""
        found: dict[str, list[str]] = {}
        for name in self.names:
            try:
                lines = self.entry(name).log_file.read_text(errors="replace").splitlines()
            except OSError:
                continue
            hits = [
                (lines[i - 1] if i else "") + " | " + _exception_line(lines, i)
                for i, line in enumerate(lines)
                if line.startswith("Traceback")
            ]
            if hits:
                found[name] = hits
        return found

    def close(self) -> None:
        """Stop every process this object started: SIGCONT, SIGTERM, then SIGKILL."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
                    process.send_signal(signal.SIGTERM)
        deadline = now_s() + STOP_GRACE_S
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - now_s()))
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=STOP_GRACE_S)
        self.paused.clear()

    # ---- HTTP

    @property
    def transport(self) -> Transport:
        """The SDK transport to every node, one node per request (no failover)."""
        if self._transport is None:
            self._transport = Transport(
                [entry.api_url for entry in self.network.nodes],
                self.ssl(),
                timeout_s=REQUEST_TIMEOUT_S,
                connect_timeout_s=REQUEST_TIMEOUT_S,
                retry=RetryPolicy(rounds=1),
            )
        return self._transport

    async def get(
        self, name: str, path: str, timeout_s: float, params: dict[str, str] | None = None
    ) -> Reply:
        """One GET to one node, whatever its status; NodeFailed or TimeoutError if none."""
        async with asyncio.timeout(timeout_s):
            return await self.transport.fetch(
                self.api_url(name), "GET", path, params=params, accept="*/*"
            )

    async def status(self, name: str, timeout_s: float = STATUS_TIMEOUT_S) -> dict[str, Any] | None:
        """The node's /v1/status, or None if it does not answer in time."""
        try:
            reply = await self.get(name, "/v1/status", timeout_s)
        except (NodeFailed, OSError, TimeoutError):
            return None
        body = reply.json()
        return body if reply.status == 200 and isinstance(body, dict) else None

    async def statuses(
        self, timeout_s: float = STATUS_TIMEOUT_S
    ) -> dict[str, dict[str, Any] | None]:
        answers = await asyncio.gather(*(self.status(name, timeout_s) for name in self.names))
        return dict(zip(self.names, answers, strict=True))

    async def primary(self, timeout_s: float = 30.0) -> str:
        """The validator that most validators name as primary (they agree on a view)."""
        deadline = now_s() + timeout_s
        while True:
            statuses = await self.statuses()
            votes = Counter(
                int(s["primary"])
                for name, s in statuses.items()
                if s is not None and name in self.validators and s.get("active", True)
            )
            if votes:
                primary, count = votes.most_common(1)[0]
                if count * 3 > len(self.validators) * 2:
                    return self.name_of_replica(primary)
            if now_s() > deadline:
                raise AssertionError(f"no primary agreed by a quorum: {statuses}")
            await asyncio.sleep(0.2)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.close()

    async def __aenter__(self) -> ProcessNetwork:
        try:
            await self.start_all()
        except BaseException:
            self.close()
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        await self.aclose()


def _exception_line(lines: list[str], start: int) -> str:
    """The exception line that ends the traceback starting at ``start``."""
    for line in lines[start + 1 : start + 200]:
        if line and not line.startswith((" ", "Traceback", "During handling", "The above")):
            return line
    return "?"


# ------------------------------------------------------------------ workload


@dataclass(frozen=True)
class Ack:
    """One acknowledged transaction: committed, its proof checked by the SDK."""

    sender: str
    nonce: int
    tx_id: str
    submitted_s: float
    acked_s: float
    height: int
    block_hash: str
    status: str
    code: str | None


@dataclass(frozen=True)
class Failure:
    sender: str
    nonce: int | None
    code: str
    at_s: float


@dataclass(frozen=True)
class WorkloadPlan:
    """What the participants do: ``rate_tx_s`` in total over ``senders``, each
    keeping at most ``window`` transactions in flight; one SDK call waits at
    most ``submit_timeout_s`` for its commit."""

    rate_tx_s: float = 20.0
    senders: tuple[str, ...] = SUPPLIERS
    window: int = 8
    submit_timeout_s: float = 120.0


class Workload:
    """SDK senders submitting pipelined transactions; records every ack (see module doc)."""

    def __init__(self, net: ProcessNetwork, plan: WorkloadPlan, tag: str) -> None:
        self.net = net
        self.plan = plan
        self.tag = tag
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        self.proof_errors: list[str] = []
        self.started_s = 0.0
        self.stopped_s: float | None = None
        self.unfinished = 0
        self._stop = asyncio.Event()
        self._pacers: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._clients: list[ProvenetClient] = []
        self._acked = asyncio.Condition()

    async def start(self) -> None:
        validators = self.net.validators
        self.started_s = now_s()
        for index, sender in enumerate(self.plan.senders):
            client = self.net.client(sender, node=validators[index % len(validators)])
            self._clients.append(client)
            self._pacers.append(
                asyncio.create_task(self._pace(sender, client), name=f"sender-{sender}")
            )

    async def _pace(self, sender: str, client: ProvenetClient) -> None:
        interval_s = len(self.plan.senders) / self.plan.rate_tx_s
        window = asyncio.Semaphore(self.plan.window)
        next_s = now_s()
        index = 0
        while not self._stop.is_set():
            await window.acquire()
            delay_s = next_s - now_s()
            if delay_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay_s)
            if self._stop.is_set():
                window.release()
                return
            # Never burst to catch up more than one interval after a stall.
            next_s = max(next_s + interval_s, now_s() - interval_s)
            task = asyncio.create_task(self._one(sender, client, index, window))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            index += 1

    async def _one(
        self, sender: str, client: ProvenetClient, index: int, window: asyncio.Semaphore
    ) -> None:
        submitted_s = now_s()
        nonce: int | None = None
        args = {"lot_id": f"{self.tag}-{sender}-{index}", "product": "wheat", "mass_grams": 1_000}
        try:
            tx = await client.sign("food", "harvest", args)
            nonce = tx.nonce
            receipt = await client.submit_tx(
                tx, wait=True, timeout_s=self.plan.submit_timeout_s, raise_on_reject=False
            )
            if receipt.get("status") not in ("ok", "rejected"):
                self.failures.append(Failure(sender, nonce, "not_committed", now_s()))
                return
            ack = Ack(
                sender=sender,
                nonce=nonce,
                tx_id=str(receipt["tx_id"]),
                submitted_s=submitted_s,
                acked_s=now_s(),
                height=int(receipt["height"]),
                block_hash=str(receipt["block_hash"]),
                status=str(receipt["status"]),
                code=receipt.get("code"),
            )
            self.acks.append(ack)
            async with self._acked:
                self._acked.notify_all()
        except ProofError as error:
            # A proof that does not hold is a safety failure, not a liveness one.
            self.proof_errors.append(f"{sender}/{nonce}: {error}")
        except ProvenetError as error:
            self.failures.append(Failure(sender, nonce, error.code, now_s()))
        except Exception as error:
            # The SDK promises ProvenetError for every failure: anything else
            # escaping it is a finding of its own, counted under its type.
            self.failures.append(Failure(sender, nonce, f"raised_{type(error).__name__}", now_s()))
        except asyncio.CancelledError:
            self.unfinished += 1
            raise
        finally:
            window.release()

    async def wait_for_ack(self, predicate: Callable[[Ack], bool], timeout_s: float) -> Ack | None:
        """The first ack (already recorded or coming) that ``predicate`` accepts, or None."""

        def found() -> Ack | None:
            return next((ack for ack in self.acks if predicate(ack)), None)

        async with self._acked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait_for(lambda: found() is not None), timeout_s)
        return found()

    async def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Stop offering load, give in-flight calls ``drain_timeout_s``, cancel the rest."""
        self._stop.set()
        self.stopped_s = now_s()
        # A pacer may be waiting for a window slot that a stuck call holds.
        for pacer in self._pacers:
            pacer.cancel()
        await asyncio.gather(*self._pacers, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=drain_timeout_s)
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        for client in self._clients:
            await client.close()

    def longest_waits_s(self) -> dict[str, float]:
        """Per sender, the longest time between consecutive acks (from the start,
        up to the moment the load stopped): a wedged sender shows here."""
        end_s = self.stopped_s if self.stopped_s is not None else now_s()
        waits: dict[str, float] = {}
        for sender in self.plan.senders:
            times = sorted(
                a.acked_s for a in self.acks if a.sender == sender and a.acked_s <= end_s
            )
            marks = [self.started_s, *times, end_s]
            waits[sender] = round(max(b - a for a, b in pairwise(marks)), 2)
        return waits


# ------------------------------------------------------------------ monitoring


@dataclass(frozen=True)
class Sample:
    at_s: float
    name: str
    height: int | None
    view: int | None


class StatusMonitor:
    """Samples every node's height and view a few times a second."""

    def __init__(self, net: ProcessNetwork, interval_s: float = MONITOR_INTERVAL_S) -> None:
        self.net = net
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        # When each completed polling round began (every node asked once).
        self.round_starts: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-monitor")

    async def _run(self) -> None:
        while True:
            started = now_s()
            statuses = await self.net.statuses()
            for name, status in statuses.items():
                height = None if status is None else int(status["height"])
                view = None if status is None or status.get("view") is None else int(status["view"])
                self.samples.append(Sample(now_s(), name, height, view))
            self.round_starts.append(started)
            await asyncio.sleep(max(0.0, self.interval_s - (now_s() - started)))

    async def wait_round_started_after(
        self, at_s: float, timeout_s: float = ROUND_TIMEOUT_S
    ) -> bool:
        """Wait (bounded) until a polling round that began at or after ``at_s`` is done."""
        deadline = now_s() + timeout_s
        while not self.round_starts or self.round_starts[-1] < at_s:
            if now_s() > deadline or self._task is None or self._task.done():
                return False
            await asyncio.sleep(self.interval_s / 5)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def rounds(self) -> list[tuple[float, dict[str, Sample]]]:
        """Samples grouped into polling rounds: (time of the round, latest per node)."""
        rounds: list[tuple[float, dict[str, Sample]]] = []
        current: dict[str, Sample] = {}
        for sample in self.samples:
            if sample.name in current:
                rounds.append((max(s.at_s for s in current.values()), current))
                current = {}
            current[sample.name] = sample
        if current:
            rounds.append((max(s.at_s for s in current.values()), current))
        return rounds

    def highest_height_at(self, at_s: float) -> int:
        heights = [s.height for s in self.samples if s.at_s <= at_s and s.height is not None]
        return max(heights, default=0)


# ------------------------------------------------------------------ faults and recovery


@dataclass
class Fault:
    kind: str
    nodes: tuple[str, ...]
    at_s: float
    healed_s: float | None = None


class FaultLog:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def begin(self, kind: str, *nodes: str) -> Fault:
        fault = Fault(kind, tuple(nodes), now_s())
        self.faults.append(fault)
        return fault

    def heal(self, fault: Fault) -> None:
        fault.healed_s = now_s()


def _since(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 2)


def recovery(
    fault: Fault, acks: Sequence[Ack], monitor: StatusMonitor, validators: Sequence[str]
) -> dict[str, Any]:
    """Seconds from the fault (and its heal) to the next commit of a new
    transaction, to every node catching up, and to one view among validators."""
    healed = fault.healed_s if fault.healed_s is not None else fault.at_s
    after_fault = min((a.acked_s for a in acks if a.submitted_s >= fault.at_s), default=None)
    after_heal = min((a.acked_s for a in acks if a.submitted_s >= healed), default=None)
    target = monitor.highest_height_at(healed)
    caught_up = one_view = None
    for at_s, latest in monitor.rounds():
        if at_s < healed:
            continue
        heights = [s.height for s in latest.values()]
        if caught_up is None and all(h is not None and h >= target for h in heights):
            caught_up = at_s
        views = {latest[n].view for n in validators if n in latest}
        if caught_up is not None and len(views) == 1 and None not in views:
            one_view = at_s
            break
    return {
        "fault": fault.kind,
        "nodes": list(fault.nodes),
        "outage_s": _since(fault.at_s, fault.healed_s),
        "commit_after_fault_s": _since(fault.at_s, after_fault),
        "commit_after_heal_s": _since(healed, after_heal),
        "caught_up_after_heal_s": _since(healed, caught_up),
        "one_view_after_heal_s": _since(healed, one_view),
    }


# ------------------------------------------------------------------ history


@dataclass
class History:
    """What the nodes hold after the run, and how it compares with the acks."""

    converged: bool
    final: dict[str, dict[str, Any]]
    forks: list[int]
    lost: list[str]
    # Transactions ordered a second time after executing (receipt "duplicate").
    reordered_again: int = 0
    detail: list[str] = field(default_factory=list)


async def wait_converged(
    net: ProcessNetwork, timeout_s: float = CONVERGE_TIMEOUT_S
) -> tuple[bool, dict[str, dict[str, Any] | None]]:
    """Wait until every node reports one height, block hash and state root."""
    deadline = now_s() + timeout_s
    while True:
        statuses = await net.statuses(timeout_s=2.0)
        answered = [s for s in statuses.values() if s is not None]
        if len(answered) == len(statuses):
            keys = {(s["height"], s["block_hash"], s["state_root"]) for s in answered}
            if len(keys) == 1:
                return True, statuses
        if now_s() > deadline:
            return False, statuses
        await asyncio.sleep(0.5)


async def read_chain(net: ProcessNetwork, name: str, height: int) -> dict[int, dict[str, Any]]:
    """Blocks 1..height of one node (hash and per-transaction results) by height."""
    blocks: dict[int, dict[str, Any]] = {}
    start = 1
    while start <= height:
        params = {"from": str(start), "limit": str(BLOCKS_PAGE)}
        reply = await net.get(name, "/v1/blocks", REQUEST_TIMEOUT_S, params)
        page = reply.json()["blocks"]
        if not page:
            break
        for block in page:
            blocks[int(block["height"])] = block
        start = max(blocks) + 1
    return blocks


Place = tuple[int, str, str]


def places(chain: dict[int, dict[str, Any]]) -> dict[str, list[Place]]:
    """Every (height, block hash, result) at which each transaction id is on ``chain``.

    A transaction can be ordered again after it executed (a resubmission
    racing a view change); it then has a second receipt, "duplicate".
    """
    placed: dict[str, list[Place]] = {}
    for height, block in sorted(chain.items()):
        for tx in block["txs"]:
            placed.setdefault(tx["tx_id"], []).append((height, block["hash"], tx["status"]))
    return placed


def missing(acks: Sequence[Ack], placed: dict[str, list[Place]]) -> list[Ack]:
    """The acks not on the chain at the height, in the block and with the result
    the SDK's verified proof named: each one is a lost transaction."""
    return [a for a in acks if (a.height, a.block_hash, a.status) not in placed.get(a.tx_id, [])]


async def check_history(net: ProcessNetwork, acks: Sequence[Ack]) -> History:
    """One chain on every node, holding every acknowledged transaction where its proof said."""
    converged, statuses = await wait_converged(net)
    final = {
        name: {
            "height": None if s is None else s.get("height"),
            "view": None if s is None else s.get("view"),
            "state_root": None if s is None else s.get("state_root"),
        }
        for name, s in statuses.items()
    }
    heights = [int(s["height"]) for s in statuses.values() if s is not None]
    height = min(heights, default=0)
    chains = {name: await read_chain(net, name, height) for name in net.names if statuses[name]}
    forks = [
        h
        for h in range(1, height + 1)
        if len({chain.get(h, {}).get("hash") for chain in chains.values()}) != 1
    ]
    lost: list[str] = []
    detail: list[str] = []
    repeats = 0
    for name, chain in chains.items():
        placed = places(chain)
        repeats = max(repeats, sum(len(where) - 1 for where in placed.values()))
        for ack in missing(acks, placed):
            lost.append(ack.tx_id)
            if len(detail) < 10:
                found = placed.get(ack.tx_id, [])
                detail.append(f"{name}: {ack.sender}/{ack.nonce} acked {ack} found {found}")
    if len(chains) != len(net.names):
        detail.append(f"nodes not answering at the end: {sorted(set(net.names) - set(chains))}")
    return History(converged, final, forks, sorted(set(lost)), repeats, detail)


# ------------------------------------------------------------------ report


@dataclass(frozen=True)
class FaultReport:
    scenario: str
    acknowledged: int
    lost: int
    rejected: int
    errors: dict[str, int]
    proof_errors: int
    recovery: list[dict[str, Any]]
    longest_sender_wait_s: dict[str, float]
    final_views: dict[str, int | None]
    final_heights: dict[str, int | None]
    converged: bool
    one_chain: bool
    # Transactions that were ordered again after they executed (their second
    # receipt is "duplicate"): harmless to safety, but work done twice.
    reordered_again: int
    log_tracebacks: dict[str, list[str]]
    duration_s: float
    offered_rate_tx_s: float
    # The outage the scenario itself imposes (every validator down): sender
    # waits are bounded relative to it.
    expected_outage_s: float = 0.0
    detail: list[str] = field(default_factory=list)

    def json_line(self) -> str:
        return f"{REPORT_PREFIX} " + json.dumps(asdict(self), sort_keys=True)

    def print_line(self) -> None:
        line = self.json_line()
        print(line, flush=True)
        target = os.environ.get(REPORT_FILE_ENV)
        if target:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    @property
    def max_sender_wait_s(self) -> float:
        return max(self.longest_sender_wait_s.values(), default=0.0)

    def problems(
        self,
        commit_resume_bound_s: float = COMMIT_RESUME_BOUND_S,
        catch_up_bound_s: float = CATCH_UP_BOUND_S,
        sender_wait_bound_s: float = SENDER_WAIT_BOUND_S,
    ) -> list[str]:
        """Every way this run broke safety or liveness (empty when it held)."""
        problems = []
        if self.lost:
            problems.append(f"{self.lost} acknowledged transactions lost")
        if self.proof_errors:
            problems.append(f"{self.proof_errors} commit proofs did not verify")
        if not self.one_chain:
            problems.append("the nodes hold different chains")
        if not self.converged:
            problems.append(f"the nodes never converged: {self.final_heights}")
        if self.acknowledged == 0:
            problems.append("nothing was acknowledged")
        views = {v for v in self.final_views.values() if v is not None}
        if len(views) > 1:
            problems.append(f"validators ended in different views: {self.final_views}")
        for item in self.recovery:
            resumed = item["commit_after_fault_s"]
            outage = item["outage_s"] or 0.0
            if resumed is None or resumed > outage + commit_resume_bound_s:
                problems.append(f"commits did not resume after {item}")
            caught_up = item["caught_up_after_heal_s"]
            if caught_up is None or caught_up > catch_up_bound_s:
                problems.append(f"the nodes did not catch up after {item}")
        if self.max_sender_wait_s > self.expected_outage_s + sender_wait_bound_s:
            problems.append(f"a sender waited too long: {self.longest_sender_wait_s}")
        if self.log_tracebacks:
            problems.append(f"tracebacks in node logs: {self.log_tracebacks}")
        return problems

    def assert_ok(self, **bounds: float) -> None:
        problems = self.problems(**bounds)
        assert not problems, f"{self.scenario}: " + "; ".join(problems) + f"\n{self.json_line()}"


# ------------------------------------------------------------------ a run


class Campaign:
    """One scenario's run: a workload, a monitor and a fault log on a network."""

    def __init__(
        self,
        scenario: str,
        net: ProcessNetwork,
        plan: WorkloadPlan | None = None,
        expected_outage_s: float = 0.0,
    ) -> None:
        self.scenario = scenario
        self.net = net
        self.plan = plan or WorkloadPlan()
        self.workload = Workload(net, self.plan, f"{scenario}-{time.time_ns()}")
        self.monitor = StatusMonitor(net)
        self.faults = FaultLog()
        self.expected_outage_s = expected_outage_s
        self.started_s = 0.0

    async def start(self) -> None:
        self.started_s = now_s()
        self.monitor.start()
        await self.workload.start()

    async def run_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_commit_after(
        self, fault: Fault, timeout_s: float = COMMIT_RESUME_BOUND_S
    ) -> Ack | None:
        """Wait (bounded) for the commit of a transaction submitted after ``fault``."""
        return await self.workload.wait_for_ack(lambda a: a.submitted_s >= fault.at_s, timeout_s)

    async def wait_caught_up(self, fault: Fault, timeout_s: float = CATCH_UP_BOUND_S) -> bool:
        """Wait (bounded) until every node reaches the height the highest had at the heal."""
        healed = fault.healed_s if fault.healed_s is not None else fault.at_s
        target = self.monitor.highest_height_at(healed)
        deadline = now_s() + timeout_s
        while now_s() < deadline:
            statuses = await self.net.statuses()
            if all(s is not None and int(s["height"]) >= target for s in statuses.values()):
                return True
            await asyncio.sleep(0.25)
        return False

    async def finish(self) -> FaultReport:
        """Stop the load, check the history on every node, print and return the report."""
        try:
            await self.workload.stop()
            history = await check_history(self.net, self.workload.acks)
            # Recovery is read from the monitor's rounds, and a run can end within
            # one round of its last heal (a fault that costs no height, such as
            # a forging proxy): one more round, begun after the history check
            # saw the nodes converge, measures their catch-up instead of
            # reporting none.
            await self.monitor.wait_round_started_after(now_s())
        finally:
            await self.monitor.stop()
        report = self._report(history)
        report.print_line()
        return report

    def _report(self, history: History) -> FaultReport:
        acks = self.workload.acks
        validators = self.net.validators
        errors = Counter(f.code for f in self.workload.failures)
        if self.workload.unfinished:
            errors["unfinished_at_stop"] += self.workload.unfinished
        return FaultReport(
            scenario=self.scenario,
            acknowledged=len(acks),
            lost=len(history.lost),
            rejected=sum(1 for a in acks if a.status != "ok"),
            errors=dict(errors),
            proof_errors=len(self.workload.proof_errors),
            recovery=[recovery(f, acks, self.monitor, validators) for f in self.faults.faults],
            longest_sender_wait_s=self.workload.longest_waits_s(),
            final_views={n: history.final[n]["view"] for n in validators},
            final_heights={n: history.final[n]["height"] for n in self.net.names},
            converged=history.converged,
            one_chain=history.converged and not history.forks,
            reordered_again=history.reordered_again,
            log_tracebacks=self.net.log_tracebacks(),
            duration_s=round(now_s() - self.started_s, 1),
            offered_rate_tx_s=self.plan.rate_tx_s,
            expected_outage_s=self.expected_outage_s,
            detail=history.detail + self.workload.proof_errors[:5],
        )


__all__ = [
    "REPO",
    "SUPPLIERS",
    "Ack",
    "Campaign",
    "Fault",
    "FaultLog",
    "FaultReport",
    "ProcessNetwork",
    "StatusMonitor",
    "Workload",
    "WorkloadPlan",
    "check_history",
    "recovery",
    "wait_converged",
]

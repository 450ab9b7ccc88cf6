"""The network benchmark's two runs on a started network: throughput, then latency.

``scripts/bench_network.py`` describes what is measured and parses the
command line; this module does it: it signs the workload, commits its
setup, runs each phase with its client processes, and writes each run's
section of the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.children import Child
from benchkit.console import log
from benchkit.http import NodeHttp
from benchkit.load import BATCH, PACED, ClientJob
from benchkit.network import (
    LocalNetwork,
    agreement,
    commit_setup,
    next_nonces,
    observers_agree,
    start_local_network,
    status_of,
    wait_connected,
)
from benchkit.phase import Phase, run_phase
from benchkit.procstat import cpu_s_deltas, process_cpu_s
from benchkit.report import CEILING_CORES, Observed, attach_observer_sections, summarise
from benchkit.tracker import Tracker
from benchkit.watcher import WatchJob, observer_settled, watch
from benchkit.workload import (
    MIXED,
    TX_PER_INDEPENDENT_CHAIN,
    TX_PER_MIXED_CHAIN,
    Workload,
    build_workload,
)
from consensus import ed25519
from contracts.tx import Transaction, encode_tx

START_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 20.0
SUBSCRIBE_TIMEOUT_S = 10.0
OBSERVER_SETTLE_TIMEOUT_S = 30.0
WATCHER_START_TIMEOUT_S = 30.0
WATCHER_STOP_TIMEOUT_S = 15.0
# A latency run may take its own length, the stall allowance and this much more.
LATENCY_RUN_SLACK_S = 30.0


@dataclass(frozen=True)
class Settings:
    """What to run (the command line of scripts/bench_network.py)."""

    validators: int
    observers: int
    clients: int
    chains: int
    mode: str
    latency_mode: str
    rate: float
    duration_s: float
    latency_node: int
    batch: int
    window: int
    base_port: int
    tls: bool
    max_run_s: float
    stall_s: float


def encoded(txs: Sequence[Transaction]) -> list[bytes]:
    return [encode_tx(tx) for tx in txs]


def verify_ceiling(validators: int, count: int) -> dict[str, Any]:
    """This host's Ed25519 verify rate on one core, and the throughput it allows."""
    from bench_verify import verify_rate

    backend = ed25519.BACKEND
    rate = verify_rate(backend, count)
    ceiling = CEILING_CORES * rate / validators
    return {
        "backend": backend,
        "verify_per_s_one_core": round(rate),
        "ceiling_tx_per_s": round(ceiling, 1),
        "ceiling_formula": f"{CEILING_CORES} cores x verify rate / {validators} validators",
    }


class NetworkBench:
    """The runs on one started network, sharing its block subscriber and watcher."""

    def __init__(
        self, settings: Settings, net: LocalNetwork, http: NodeHttp, report: dict[str, Any]
    ) -> None:
        self.settings = settings
        self.net = net
        self.http = http
        self.report = report
        self.validators = net.validators
        self.observers = net.observers
        self.pids = net.pids_of(self.validators)
        self.observer_pids = net.pids_of(self.observers)
        self.primary_url = self.validators[0].api_url
        self.signers = net.signers()
        self.tracker = Tracker(self.validators[-1].api_url)
        self.watcher: Child | None = None
        self.observed: Observed = {}
        self.tag = f"b{int(time.time())}"

    async def _sign(self, mode: str, chains: int, tag: str) -> Workload:
        """Sign a workload from the senders' next nonces on the primary."""
        return build_workload(
            self.signers,
            self.net.network.chain_id,
            mode=mode,
            chains=chains,
            run_tag=tag,
            next_nonces=await next_nonces(self.http, self.primary_url, self.signers),
        )

    async def _run(self, phase: Phase, max_s: float) -> dict[str, Any]:
        cpu = await run_phase(
            phase,
            self.tracker,
            self.pids,
            max_s,
            self.settings.stall_s,
            self.observer_pids,
            self.watcher.pid if self.watcher else None,
        )
        return summarise(phase, self.tracker, cpu)

    async def observe(self, phase: Phase) -> None:
        """After a run: wait for the observer to catch up and note how it ended."""
        if not self.observers:
            return
        observer = self.observers[0]
        settled = await observer_settled(
            self.http, self.validators, observer, OBSERVER_SETTLE_TIMEOUT_S
        )
        heights = [b.height for b in self.tracker.blocks_of(phase.name)]
        now = {name: process_cpu_s(pid) for name, pid in self.observer_pids.items()}
        deltas = cpu_s_deltas(phase.observer_cpu_before, now)
        cpu = {name: deltas.get(name) for name in self.observer_pids}
        span = (min(heights), max(heights)) if heights else None
        self.observed[phase.name] = (phase, span, settled, cpu)
        log(
            f"{phase.name}: {observer.name} at height {settled['observer_height']} "
            f"after {settled['waited_s']} s; same root {settled['same_state_root']}"
        )

    async def start_watcher(self) -> None:
        """Once the observer caught up with the setup, watch it beside v0."""
        validator, observer = self.validators[0], self.observers[0]
        settled = await observer_settled(
            self.http, self.validators, observer, OBSERVER_SETTLE_TIMEOUT_S
        )
        if not settled["same_height"]:
            raise RuntimeError(f"{observer.name} did not catch up: {settled}")
        job = WatchJob(
            validator=validator.name,
            validator_url=validator.api_url,
            observer=observer.name,
            observer_url=observer.api_url,
            ca_file=self.net.ca_file,
            from_height=settled["observer_height"] + 1,
        )
        self.watcher = Child(watch, "watcher", job)
        await self.watcher.start(WATCHER_START_TIMEOUT_S)
        log(f"watching {validator.name} and {observer.name} block streams")

    async def throughput(self, lanes: list[list[bytes]]) -> None:
        s = self.settings
        n = len(self.validators)
        self.tracker.track("throughput", lanes)
        jobs = [
            ClientJob(
                index=i,
                api_url=self.validators[i % n].api_url,
                ca_file=self.net.ca_file,
                envelopes=lane,
                kind=BATCH,
                batch_size=s.batch,
                window=s.window,
            )
            for i, lane in enumerate(lanes)
        ]
        phase = Phase("throughput", lanes, jobs)
        log(f"throughput run: {len(jobs)} client processes, {sum(map(len, lanes))} txs")
        blocks_before = len(self.tracker.blocks)
        summary = await self._run(phase, s.max_run_s)
        summary["blocks_all"] = len(self.tracker.blocks) - blocks_before
        self.report["throughput"] = {
            "mode": s.mode,
            "chains": s.chains,
            "clients": len(jobs),
            "client_nodes": [self.validators[i % n].name for i in range(len(jobs))],
            "lane_sizes": [len(lane) for lane in lanes],
            "txs_per_post": s.batch,
            "window_per_lane": s.window,
            **summary,
        }
        log(
            f"throughput: {summary.get('committed_tx_per_s')} tx/s, "
            f"p50 {summary['latency_ms']['p50']} ms, batch {summary['mean_batch_size']}"
        )
        await self.observe(phase)

    async def latency(self) -> None:
        s = self.settings
        count = max(1, math.ceil(s.rate * s.duration_s))
        per_chain = TX_PER_MIXED_CHAIN if s.latency_mode == MIXED else TX_PER_INDEPENDENT_CHAIN
        workload = await self._sign(s.latency_mode, math.ceil(count / per_chain), f"{self.tag}l")
        await commit_setup(self.http, self.primary_url, encoded(workload.setup))
        lane = encoded(workload.txs[:count])
        node = self.validators[s.latency_node % len(self.validators)]
        self.tracker.track("latency", [lane])
        job = ClientJob(0, node.api_url, self.net.ca_file, lane, PACED, rate=s.rate)
        phase = Phase("latency", [lane], [job])
        log(f"latency run: {s.rate:g} tx/s for {s.duration_s:g} s to {node.name}")
        summary = await self._run(phase, s.duration_s + s.stall_s + LATENCY_RUN_SLACK_S)
        for key in ("committed_tx_per_s_middle_80pct", "first_submit_to_last_commit_tx_per_s"):
            summary.pop(key, None)
        client = phase.results.get(0) or {}
        self.report["latency"] = {
            "mode": s.latency_mode,
            "offered_tx_per_s": s.rate,
            "duration_s": s.duration_s,
            "submit": "one POST /v1/txs per transaction, msgpack, no wait",
            "client_node": node.name,
            "offered_s": client.get("offered_s"),
            "offered_tx_per_s_actual": client.get("offered_tx_per_s_actual"),
            **summary,
        }
        log(
            f"latency: p50 {summary['latency_ms']['p50']} ms, p99 {summary['latency_ms']['p99']} ms"
        )
        await self.observe(phase)

    async def stop_watcher(self) -> None:
        if self.watcher is None:
            return
        try:
            seen = await self.watcher.stop(WATCHER_STOP_TIMEOUT_S)
            attach_observer_sections(
                self.report, self.watcher.job, seen, self.watcher.error, self.observed
            )
        except Exception as exc:  # the report still gets the rest
            self.report["observer_error"] = f"{type(exc).__name__}: {exc}"

    async def run(self) -> None:
        s = self.settings
        started = time.perf_counter()
        workload = await self._sign(s.mode, s.chains, f"{self.tag}t")
        lanes = [encoded(lane) for lane in workload.lanes(s.clients)]
        lanes = [lane for lane in lanes if lane]
        setup = encoded(workload.setup)
        log(
            f"signed {len(workload.txs)} {s.mode} transactions in "
            f"{time.perf_counter() - started:.1f} s; lanes {[len(lane) for lane in lanes]}"
        )
        height = (await status_of(self.http, self.validators[-1]))["height"]
        subscriber = asyncio.create_task(self.tracker.run(self.http, height + 1))
        try:
            await asyncio.wait_for(self.tracker.connected.wait(), SUBSCRIBE_TIMEOUT_S)
            await commit_setup(self.http, self.primary_url, setup)
            log(f"committed {len(setup)} setup transactions")
            if self.observers:
                await self.start_watcher()
            await self.throughput(lanes)
            if s.duration_s > 0 and s.rate > 0:
                await self.latency()
        finally:
            await self.stop_watcher()
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
        self.report["subscriber"] = {
            "node": self.validators[-1].name,
            "reconnects": self.tracker.reconnects,
        }
        self.report["agreement"] = await agreement(self.http, self.validators)
        if self.observers:
            self.report["agreement"]["observers"] = await observers_agree(
                self.http, self.observers, self.report["agreement"]
            )


async def bench(settings: Settings, root: Path, report: dict[str, Any]) -> None:
    """Start the network in ``root/net`` and run the benchmark on it (the caller stops it)."""
    net = await start_local_network(
        root / "net",
        settings.validators,
        settings.observers,
        tls=settings.tls,
        base_port=settings.base_port,
        timeout_s=START_TIMEOUT_S,
    )
    report["node_pids"] = net.pids_of(net.validators)
    if net.observers:
        report["observer_pids"] = net.pids_of(net.observers)
    async with net.http() as http:
        await wait_connected(http, net.validators, CONNECT_TIMEOUT_S)
        await NetworkBench(settings, net, http, report).run()

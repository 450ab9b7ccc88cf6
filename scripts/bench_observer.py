#!/usr/bin/env python3
"""How far observers trail the validators at saturation, and what they say about it.

Prints one JSON document on stdout (progress on stderr).  Run it with the
project's virtualenv: ``.venv/bin/python scripts/bench_observer.py``
(``scripts/bench`` installs it).

What it does
------------
1. Starts ``--validators`` validators and ``--observers`` observers
   (default 7 and 2), each its own ``provenet node run`` process, with
   ``node.ops.netinit.init_network`` and ``node.ops.netctl.up``, as
   ``scripts/bench_network.py`` does.
2. Saturates them with the network benchmark's client processes (``benchkit.load``):
   by default ``--clients`` paced clients, each POSTing one pre-signed
   transaction at a time to its own validator at ``--paced-rate`` tx/s,
   which makes many small blocks (the most blocks per second, the
   observers' hardest case); with ``--paced-rate 0`` batch POSTs with a
   bounded window in flight instead (fewer, larger blocks).
3. Meanwhile a sampler process (its own, so its clock is not held up by the
   bench's work) subscribes to ``GET /v1/events`` (a websocket, one frame
   per block) on every validator and every observer and stamps each block's
   arrival with ``time.monotonic()``.  Every ``--sample-interval-s`` it
   reads each observer's ``/v1/status`` and notes, at the same instant, the
   highest height any validator's stream has shown.  From that it reports
   per observer:

   * ``lag_blocks``: highest validator height minus the observer's height
     (its own stream), at every sample: the truth, from the validators;
   * ``lag_ms``: for every height, the observer's arrival minus the first
     validator's arrival of the same height;
   * ``reported_lag_blocks``: what the observer's status said
     (``following.lag_blocks``) in the same samples, and
     ``reported_minus_true``, the error of that report.

4. ``--stop-validator NAME`` also SIGSTOPs that validator
   ``--stop-after-s`` into the run, for ``--stop-for-s``, then SIGCONTs it:
   a hanging source.  ``--stop-validator source`` stops the one the first
   observer follows at that moment; ``observers_while_stopped`` has the
   figures of that window.

It always stops the network at the end.  The machine's load average is in
the report: on a shared host the figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit.children import Child, serve_until_stopped
from benchkit.console import log
from benchkit.http import NodeFailed, NodeHttp, ssl_for_ca_file
from benchkit.load import BATCH, PACED, ClientJob
from benchkit.network import (
    commit_setup,
    next_nonces,
    run_in_network_dir,
    start_local_network,
    status_of,
    wait_connected,
)
from benchkit.phase import Phase, run_phase
from benchkit.procstat import load_average
from benchkit.report import summarise
from benchkit.stats import percentiles
from benchkit.tracker import Tracker
from benchkit.watcher import frame_height
from benchkit.workload import INDEPENDENT, build_workload

from contracts.tx import encode_tx
from node.sdk.network_file import NodeEntry

# Subscriptions and status reads of the sampler.
SAMPLER_CONNECT_TIMEOUT_S = 5.0
SAMPLER_READY_TIMEOUT_S = 20.0
STATUS_TIMEOUT_S = 2.0
SAMPLER_START_TIMEOUT_S = 30.0
SAMPLER_STOP_TIMEOUT_S = 30.0
NETWORK_START_TIMEOUT_S = 90.0
CONNECT_TIMEOUT_S = 30.0
# Keeps an idle-looking block stream open while a stopped validator sends nothing.
STREAM_HEARTBEAT_S = 30.0


@dataclass
class SampleJob:
    """What the sampler process follows; picklable for the 'spawn' start method."""

    validators: dict[str, str]  # name -> api url
    observers: dict[str, str]
    ca_file: str | None
    from_height: int
    sample_interval_s: float


async def sample(job: SampleJob, conn: Connection) -> dict[str, Any]:
    """The sampler process's work: every block stream, and the observers' status."""
    urls = {**job.validators, **job.observers}
    arrivals: dict[str, dict[int, float]] = {name: {} for name in urls}
    last = dict.fromkeys(urls, job.from_height - 1)
    samples: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    connected = {name: asyncio.Event() for name in urls}

    def error(key: str) -> None:
        errors[key] = errors.get(key, 0) + 1

    def on_frame(name: str, seen: float, frame: str) -> None:
        height = frame_height(frame)
        if height > last[name]:
            last[name] = height
            arrivals[name][height] = seen

    async def follow(http: NodeHttp, name: str) -> None:
        def on_drop(failure: NodeFailed | None) -> None:
            if failure is not None:
                error(f"{name}:{failure.kind}")

        await http.follow_events(
            urls[name],
            lambda: last[name] + 1,
            lambda seen, frame: on_frame(name, seen, frame),
            on_open=connected[name].set,
            on_drop=on_drop,
            heartbeat_s=STREAM_HEARTBEAT_S,
        )

    async def status(http: NodeHttp, name: str) -> dict[str, Any]:
        try:
            body = await http.get_json(urls[name], "/v1/status")
        except NodeFailed as exc:
            error(f"status {name}:{exc.kind}")
            return {}
        if not isinstance(body, dict):
            error(f"status {name}:ValueError")
            return {}
        return body

    async def sample_status(http: NodeHttp) -> None:
        while True:
            due = time.monotonic() + job.sample_interval_s
            answers = await asyncio.gather(*(status(http, n) for n in job.observers))
            now = time.monotonic()
            top = max(last[v] for v in job.validators)
            for name, body in zip(job.observers, answers, strict=True):
                following = body.get("following") or {}
                samples.append(
                    {
                        "t": now,
                        "observer": name,
                        "validator_height": top,
                        "observer_height": last[name],
                        "reported_lag_blocks": following.get("lag_blocks"),
                        "reported_height": body.get("height"),
                    }
                )
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async with NodeHttp(
        list(urls.values()),
        ssl_for_ca_file(job.ca_file),
        timeout_s=STATUS_TIMEOUT_S,
        connect_timeout_s=SAMPLER_CONNECT_TIMEOUT_S,
    ) as http:
        tasks = [asyncio.create_task(follow(http, name)) for name in urls]
        # Sampling starts once every stream is connected, so heights are comparable.
        await serve_until_stopped(
            conn,
            tasks,
            list(connected.values()),
            SAMPLER_READY_TIMEOUT_S,
            then=[lambda: sample_status(http)],
        )
    return {
        "arrivals": {name: sorted(seen.items()) for name, seen in arrivals.items()},
        "samples": samples,
        "errors": errors,
    }


def observer_figures(
    seen: dict[str, Any], job: SampleJob, started: float, ended: float
) -> dict[str, Any]:
    """Per observer: true lag in blocks and ms, and what its status said at the same time."""
    arrivals = {name: dict(items) for name, items in seen["arrivals"].items()}
    first_validator: dict[int, float] = {}
    for name in job.validators:
        for height, at in arrivals[name].items():
            if started <= at <= ended and (
                height not in first_validator or at < first_validator[height]
            ):
                first_validator[height] = at
    figures: dict[str, Any] = {}
    # For reference: how far each validator's own stream trails the first
    # validator to show a height (an observer can do no better than its source).
    spread = []
    for name in job.validators:
        mine = arrivals[name]
        spread += [(mine[h] - at) * 1000 for h, at in first_validator.items() if h in mine]
    figures["validators_behind_the_first_ms"] = percentiles(spread)
    for observer in job.observers:
        mine = arrivals[observer]
        lag_ms = [(mine[h] - at) * 1000 for h, at in first_validator.items() if h in mine]
        rows = [
            s for s in seen["samples"] if s["observer"] == observer and started <= s["t"] <= ended
        ]
        true_lag = [max(0, s["validator_height"] - s["observer_height"]) for s in rows]
        reported = [
            s["reported_lag_blocks"] for s in rows if isinstance(s["reported_lag_blocks"], int)
        ]
        error = [
            s["reported_lag_blocks"] - max(0, s["validator_height"] - s["observer_height"])
            for s in rows
            if isinstance(s["reported_lag_blocks"], int)
        ]
        # The same, against the height in the same status answer as the report
        # (the observer's event stream can trail its store under load).
        error_at_status = [
            s["reported_lag_blocks"] - max(0, s["validator_height"] - s["reported_height"])
            for s in rows
            if isinstance(s["reported_lag_blocks"], int) and isinstance(s["reported_height"], int)
        ]
        figures[observer] = {
            "lag_blocks": {**percentiles(true_lag), "samples": len(true_lag)},
            "lag_ms": {
                **percentiles(lag_ms),
                "blocks": len(lag_ms),
                "missing_on_observer": sum(1 for h in first_validator if h not in mine),
            },
            "reported_lag_blocks": {**percentiles(reported), "samples": len(reported)},
            "reported_minus_true": {
                **percentiles(error),
                "min": min(error, default=None),
                "samples_under_reporting_by_more_than_2": sum(1 for e in error if e < -2),
            },
            "reported_minus_true_at_status_height": {
                **percentiles(error_at_status),
                "min": min(error_at_status, default=None),
                "samples_under_reporting_by_more_than_2": sum(1 for e in error_at_status if e < -2),
            },
        }
    return figures


async def stop_and_continue(
    http: NodeHttp,
    observer: NodeEntry,
    pids: dict[str, int],
    after_s: float,
    for_s: float,
    record: dict[str, Any],
) -> None:
    await asyncio.sleep(after_s)
    if record["validator"] == "source":
        # The validator the first observer follows right now.
        status = await status_of(http, observer)
        record["validator"] = (status.get("following") or {}).get("source")
    pid = pids[record["validator"]]
    os.kill(pid, signal.SIGSTOP)
    record["stopped_at"] = time.monotonic()
    try:
        await asyncio.sleep(for_s)
    finally:
        os.kill(pid, signal.SIGCONT)
        record["continued_at"] = time.monotonic()


async def bench(args: argparse.Namespace, root: Path, report: dict[str, Any]) -> None:
    net = await start_local_network(
        root / "net",
        args.validators,
        args.observers,
        tls=args.tls,
        base_port=args.base_port,
        timeout_s=NETWORK_START_TIMEOUT_S,
    )
    validators, observers, pids = net.validators, net.observers, net.pids
    ca_file = net.ca_file
    async with net.http() as http:
        await wait_connected(http, validators, CONNECT_TIMEOUT_S)
        primary_url = validators[0].api_url
        signers = net.signers()
        workload = build_workload(
            signers,
            net.network.chain_id,
            mode=INDEPENDENT,
            chains=args.chains,
            run_tag=f"o{int(time.time())}",
            next_nonces=await next_nonces(http, primary_url, signers),
        )
        lanes = [[encode_tx(tx) for tx in lane] for lane in workload.lanes(args.clients)]
        lanes = [lane for lane in lanes if lane]
        tracker = Tracker(validators[-1].api_url)
        height = (await status_of(http, validators[-1]))["height"]
        subscriber = asyncio.create_task(tracker.run(http, height + 1))
        await asyncio.wait_for(tracker.connected.wait(), 10)
        await commit_setup(http, primary_url, [encode_tx(tx) for tx in workload.setup])
        log(f"committed {len(workload.setup)} setup transactions; {sum(map(len, lanes))} to go")
        height = (await status_of(http, validators[0]))["height"]
        job = SampleJob(
            validators={e.name: e.api_url for e in validators},
            observers={e.name: e.api_url for e in observers},
            ca_file=ca_file,
            from_height=height + 1,
            sample_interval_s=args.sample_interval_s,
        )
        sampler = Child(sample, "sampler", job)
        stopper: asyncio.Task[None] | None = None
        try:
            await sampler.start(SAMPLER_START_TIMEOUT_S)
            tracker.track("throughput", lanes)
            jobs = [
                ClientJob(
                    index=i,
                    api_url=validators[i % len(validators)].api_url,
                    ca_file=ca_file,
                    envelopes=lane,
                    kind=PACED if args.paced_rate > 0 else BATCH,
                    batch_size=args.batch,
                    window=args.window,
                    rate=args.paced_rate,
                )
                for i, lane in enumerate(lanes)
            ]
            phase = Phase("throughput", lanes, jobs)
            if args.stop_validator:
                record: dict[str, Any] = {"validator": args.stop_validator}
                report["stopped"] = record
                stopper = asyncio.create_task(
                    stop_and_continue(
                        http,
                        observers[0],
                        pids,
                        args.stop_after_s,
                        args.stop_for_s,
                        record,
                    )
                )
            report["load_average_at_start"] = load_average()
            log(f"saturating: {len(jobs)} clients; sampling every {args.sample_interval_s:g} s")
            cpu = await run_phase(
                phase,
                tracker,
                {e.name: pids[e.name] for e in validators},
                args.max_run_s,
                args.stall_s,
                {e.name: pids[e.name] for e in observers},
            )
            report["load_average_at_end"] = load_average()
            summary = summarise(phase, tracker, cpu)
            blocks = [b for b in tracker.blocks if phase.started <= b.seen <= phase.ended]
            run_s = phase.ended - phase.started
            report["run"] = {
                "wall_s": round(run_s, 2),
                "committed_tx_per_s": summary.get("committed_tx_per_s"),
                "blocks": len(blocks),
                "blocks_per_s": round(len(blocks) / run_s, 1) if run_s > 0 else None,
                "machine_busy_cores": cpu.get("machine_busy_cores"),
                "cpu_s_observers": cpu.get("cpu_s_observers"),
            }
            log(f"run: {report['run']}")
        finally:
            if stopper is not None:
                stopper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopper
            seen = await sampler.stop(SAMPLER_STOP_TIMEOUT_S)
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
        if seen is None:
            report["sampler_error"] = sampler.error
            return
        report["sampler_errors"] = seen["errors"]
        report["observers"] = observer_figures(seen, job, phase.started, phase.ended)
        if args.stop_validator and "stopped_at" in report["stopped"]:
            record = report["stopped"]
            end = record.get("continued_at", phase.ended)
            report["observers_while_stopped"] = observer_figures(
                seen, job, record["stopped_at"], end
            )
            record["stopped_s"] = round(end - record["stopped_at"], 2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=7)
    parser.add_argument("--observers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=7, help="client processes")
    parser.add_argument("--chains", type=int, default=600, help="workload chains (15 txs each)")
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=60.0,
        help="tx/s per client, one POST /v1/txs each (many small blocks: the most blocks "
        "per second, the observers' hardest case); 0: batch POSTs with a window instead",
    )
    parser.add_argument("--batch", type=int, default=100, help="envelopes per batch POST")
    parser.add_argument("--window", type=int, default=200, help="transactions in flight per client")
    parser.add_argument("--sample-interval-s", type=float, default=0.05)
    parser.add_argument("--max-run-s", type=float, default=120.0)
    parser.add_argument("--stall-s", type=float, default=15.0)
    parser.add_argument(
        "--stop-validator",
        default=None,
        help="SIGSTOP this validator mid-run ('source': the one the first observer follows)",
    )
    parser.add_argument("--stop-after-s", type=float, default=5.0)
    parser.add_argument("--stop-for-s", type=float, default=10.0)
    parser.add_argument("--base-port", type=int, default=7800)
    parser.add_argument("--tls", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--work-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {
        "bench": "observer lag at saturation",
        "validators": args.validators,
        "observers": args.observers,
        "load_average_before": load_average(),
        "cpu_count": os.cpu_count(),
    }
    root = Path(tempfile.mkdtemp(prefix="provenet-obs-", dir=args.work_dir))
    status = run_in_network_dir(lambda: bench(args, root, report), root, report)
    print(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())

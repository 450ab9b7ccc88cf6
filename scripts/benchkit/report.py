"""The network benchmark's JSON report: each run's figures and the headline summary.

Everything here is a pure function of what the runs recorded, so it can be
checked without a network.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchkit.phase import Phase
from benchkit.stats import percentiles
from benchkit.tracker import Tracker
from benchkit.watcher import WatchJob

# The host the headline figures are for has two cores; the ceiling is
# CEILING_CORES x one core's Ed25519 verify rate / validators.
CEILING_CORES = 2
TARGET_TX_PER_S = 2_000
TARGET_P50_MS = 15.0
# A run's CPU outside the bench's processes above this share of the machine's
# busy time makes its figures low and noisy.
CONTENDED_SHARE = 0.2

# For each run that had an observer: (its phase, its heights, the observer's
# state after it, the observers' CPU seconds over the run and its catch-up).
Observed = dict[str, tuple[Phase, tuple[int, int] | None, dict[str, Any], dict[str, Any]]]


def _receipt_key(status: str, code: str | None) -> str:
    return status if code is None else f"{status}:{code}"


def _rates(phase: Phase, tracker: Tracker, commit_times: list[float]) -> dict[str, Any]:
    """Committed transactions per second over the run (needs two commits)."""
    committed = len(commit_times)
    if committed < 2:
        return {"committed_tx_per_s": None}
    first_block = tracker.blocks_of(phase.name)[0]
    window_s = commit_times[-1] - commit_times[0]
    # The first block's transactions are the window's left edge, not inside it.
    inside = committed - first_block.tracked[phase.name]
    lo, hi = commit_times[committed // 10], commit_times[(committed * 9) // 10]
    return {
        "committed_tx_per_s": round(inside / window_s, 1) if window_s > 0 else None,
        "steady_window_s": round(window_s, 3),
        "committed_tx_per_s_middle_80pct": round(0.8 * committed / (hi - lo), 1)
        if hi > lo
        else None,
        "first_submit_to_last_commit_tx_per_s": round(
            committed / (commit_times[-1] - phase.started), 1
        ),
    }


def _cpu_section(cpu: dict[str, Any], client_cpu_s: float, committed: int) -> dict[str, Any]:
    cpu["cpu_s_clients"] = round(client_cpu_s, 2)
    if cpu.get("machine_busy_core_s") is not None:
        # Busy CPU not charged to the nodes or the bench's processes: kernel threads
        # working for them (disk journal, network softirqs) and any other program.
        # The observers and the event watcher are the bench's processes too.
        ours = cpu["cpu_s_all_nodes"] + cpu["cpu_s_bench_parent"] + client_cpu_s
        ours += sum(v for v in (cpu.get("cpu_s_observers") or {}).values() if v is not None)
        ours += cpu.get("cpu_s_event_watcher") or 0.0
        cpu["cpu_s_outside_bench_processes"] = round(max(0.0, cpu["machine_busy_core_s"] - ours), 2)
    if committed and cpu.get("cpu_s_all_nodes"):
        cpu["node_cpu_ms_per_committed_tx"] = round(cpu["cpu_s_all_nodes"] / committed * 1000, 3)
    return cpu


def summarise(phase: Phase, tracker: Tracker, cpu: dict[str, Any]) -> dict[str, Any]:
    """Throughput, latency, batch size and failures of a finished phase."""
    expected = phase.expected
    latencies: list[float] = []
    commit_times: list[float] = []
    receipts: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    client_stats: Counter[str] = Counter()
    client_cpu = 0.0
    post_ms = {}
    for lane in range(len(phase.lanes)):
        result = phase.results.get(lane, {})
        submitted = result.get("submitted_at") or []
        refused.update(result.get("failed", {}).values())
        client_stats.update(result.get("stats", {}))
        client_cpu += result.get("cpu_s", 0.0)
        post_ms[str(lane)] = result.get("post_ms")
        for i in range(len(phase.lanes[lane])):
            seen = tracker.commit.get((phase.name, lane, i))
            if seen is None:
                continue
            commit_times.append(seen.seen)
            receipts[_receipt_key(seen.status, seen.code)] += 1
            sent = submitted[i] if i < len(submitted) else None
            if sent is not None:
                latencies.append((seen.seen - sent) * 1000)
    committed = len(commit_times)
    commit_times.sort()
    blocks = tracker.blocks_of(phase.name)
    summary: dict[str, Any] = {
        "offered_txs": expected,
        "committed_txs": committed,
        "committed_ok": receipts.get("ok", 0),
        **_rates(phase, tracker, commit_times),
        "latency_ms": percentiles(latencies),
        "blocks": len(blocks),
        "mean_batch_size": round(sum(b.txs for b in blocks) / len(blocks), 1) if blocks else None,
        "max_batch_size_seen": max((b.txs for b in blocks), default=None),
    }
    if len(blocks) >= 2:
        span = blocks[-1].seen - blocks[0].seen
        summary["blocks_per_s"] = round((len(blocks) - 1) / span, 1) if span > 0 else None
    summary["cpu"] = _cpu_section(cpu, client_cpu, committed)
    summary["client_post_ms"] = post_ms
    summary["client_stats"] = dict(client_stats)
    not_ok = {k: v for k, v in receipts.items() if k != "ok"}
    missing = max(0, expected - committed - sum(refused.values()))
    summary["failures"] = {
        "refused_at_submit": dict(refused),
        "committed_not_ok": not_ok,
        "never_committed": missing,
        "total": sum(refused.values()) + sum(not_ok.values()) + missing,
    }
    summary["timed_out"] = phase.timed_out
    if phase.errors:
        summary["client_errors"] = phase.errors
    return summary


def observer_summary(
    seen: dict[str, Any],
    job: WatchJob,
    phase: Phase,
    heights: tuple[int, int] | None,
    settled: dict[str, Any] | None,
) -> dict[str, Any]:
    """The observer section of one run, from what the watcher saw."""
    summary: dict[str, Any] = {
        "observer": job.observer,
        "compared_with": job.validator,
        "heights": list(heights) if heights else None,
    }
    lo, hi = heights if heights else (1, 0)
    validator_seen = dict(seen["arrivals"][job.validator])
    observer_seen = dict(seen["arrivals"][job.observer])
    lag_ms = [
        (observer_seen[height] - validator_seen[height]) * 1000
        for height in range(lo, hi + 1)
        if height in validator_seen and height in observer_seen
    ]
    at_arrival = [v - o for _, v, o in seen["at_validator"] if lo <= v <= hi]
    status_lag = [
        lag
        for t, lag, *_ in seen["samples"]
        if phase.started <= t <= phase.ended and isinstance(lag, int)
    ]
    summary["lag_blocks_status"] = {
        **percentiles(status_lag),
        "samples": len(status_lag),
        "what": "o0 /v1/status following.lag_blocks, sampled every "
        f"{job.sample_interval_s:g} s during the run",
    }
    summary["lag_blocks_at_validator_arrival"] = {
        **percentiles(at_arrival),
        "min": min(at_arrival, default=None),
        "samples": len(at_arrival),
        "what": f"{job.validator} height minus the last {job.observer} height seen, "
        f"at each {job.validator} block arrival",
    }
    summary["lag_ms"] = {
        **percentiles(lag_ms),
        "min": round(min(lag_ms), 2) if lag_ms else None,
        "blocks": len(lag_ms),
        "missing_on_observer": sum(1 for h in range(lo, hi + 1) if h not in observer_seen),
        "missing_on_validator": sum(1 for h in range(lo, hi + 1) if h not in validator_seen),
        "what": f"{job.observer} arrival minus {job.validator} arrival of the same height "
        "(GET /v1/events on both, one watcher process)",
    }
    summary["end"] = settled
    return summary


def attach_observer_sections(
    report: dict[str, Any],
    job: WatchJob,
    seen: dict[str, Any] | None,
    watcher_error: str | None,
    observed: Observed,
) -> None:
    """Put an ``observer`` section into each run's report from what the watcher saw."""
    if seen is None:
        report["observer_error"] = watcher_error or "the event watcher returned nothing"
        return
    for name, (phase, heights, settled, cpu) in observed.items():
        if name not in report:
            continue
        section = observer_summary(seen, job, phase, heights, settled)
        run_cpu = (report[name].get("cpu") or {}).get("cpu_s_observers") or {}
        section["cpu_s"] = {
            observer: {"run": run_cpu.get(observer), "run_and_catch_up": total}
            for observer, total in cpu.items()
        }
        section["cpu_s_event_watcher_run"] = (report[name].get("cpu") or {}).get(
            "cpu_s_event_watcher"
        )
        report[name]["observer"] = section
    report["event_watcher"] = {
        "nodes": [job.validator, job.observer],
        "reconnects": seen["reconnects"],
        "errors": seen["errors"],
        "cpu_s": seen["cpu_s"],
    }


def _cpu_budget(report: dict[str, Any]) -> dict[str, Any] | None:
    """Node CPU per committed transaction next to what signature checks must take."""
    tput = report.get("throughput") or {}
    node_ms = (tput.get("cpu") or {}).get("node_cpu_ms_per_committed_tx")
    if not node_ms:
        return None
    # Every validator verifies every transaction's signature once.
    verify_ms = report["validators"] / report["ed25519"]["verify_per_s_one_core"] * 1000
    return {
        "node_cpu_ms_all_validators": node_ms,
        "of_which_ed25519_verify_ms": round(verify_ms, 3),
        "ed25519_share": round(verify_ms / node_ms, 3),
        "host_cores_busy": (tput.get("cpu") or {}).get("machine_busy_cores"),
        "cpu_bound_tx_per_s": round(CEILING_CORES / node_ms * 1000, 1),
        "note": "cpu_bound_tx_per_s = 2 cores / node CPU per committed tx; when the host "
        "is busy and this is near the measured rate, node CPU per transaction is the limit",
    }


def _observer_headline(report: dict[str, Any]) -> dict[str, Any]:
    observer = {}
    for name in ("throughput", "latency"):
        section = (report.get(name) or {}).get("observer")
        if section:
            end = section.get("end") or {}
            observer[name] = {
                "lag_ms_p50": section["lag_ms"]["p50"],
                "lag_ms_p99": section["lag_ms"]["p99"],
                "lag_blocks_max": section["lag_blocks_at_validator_arrival"]["max"],
                "same_height_and_root": bool(end.get("same_height") and end.get("same_state_root")),
            }
    return observer


def _contention_warning(report: dict[str, Any]) -> str | None:
    contended = []
    for name in ("throughput", "latency"):
        cpu = (report.get(name) or {}).get("cpu") or {}
        outside, busy = cpu.get("cpu_s_outside_bench_processes"), cpu.get("machine_busy_core_s")
        if outside is not None and busy and outside > CONTENDED_SHARE * busy:
            contended.append(f"{name}: {outside} of {busy} busy core-seconds")
    if not contended:
        return None
    return (
        "CPU outside the nodes and the bench's processes (other programs, or kernel "
        "threads) was large, so the numbers are low and noisy; run on an idle host: "
        + "; ".join(contended)
    )


def finish(report: dict[str, Any]) -> None:
    """The headline numbers and the targets, next to the ceiling."""
    ceiling = report["ed25519"]["ceiling_tx_per_s"]
    throughput = (report.get("throughput") or {}).get("committed_tx_per_s")
    latency = ((report.get("latency") or {}).get("latency_ms") or {}).get("p50")
    report["ed25519"]["throughput_to_ceiling_ratio"] = (
        round(throughput / ceiling, 3) if throughput and ceiling else None
    )
    budget = _cpu_budget(report)
    if budget is not None:
        report["cpu_budget_per_tx"] = budget
    report["summary"] = {
        "committed_tx_per_s": throughput,
        "throughput_mode": (report.get("throughput") or {}).get("mode"),
        "latency_p50_ms_at_offered_rate": latency,
        "offered_tx_per_s": (report.get("latency") or {}).get("offered_tx_per_s"),
        "ceiling_tx_per_s": ceiling,
        "ratio_to_ceiling": report["ed25519"]["throughput_to_ceiling_ratio"],
        "target_tx_per_s": TARGET_TX_PER_S,
        "target_p50_ms": TARGET_P50_MS,
        "throughput_target_met": bool(throughput and throughput >= TARGET_TX_PER_S),
        "latency_target_met": bool(latency is not None and latency < TARGET_P50_MS),
    }
    observer = _observer_headline(report)
    if observer:
        report["summary"]["observer"] = observer
    warning = _contention_warning(report)
    if warning is not None:
        report["summary"]["warning"] = warning

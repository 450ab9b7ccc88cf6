"""The network benchmark's report from recorded runs: no network, fixed times."""

from __future__ import annotations

from typing import Any

from benchkit.load import BATCH, ClientJob
from benchkit.phase import Phase
from benchkit.report import TARGET_P50_MS, TARGET_TX_PER_S, finish, observer_summary, summarise
from benchkit.tracker import Tracker
from benchkit.watcher import WatchJob

from consensus.codec import digest

LANE = [b"tx-0", b"tx-1", b"tx-2", b"tx-3"]
CPU = {
    "wall_s": 2.0,
    "cpu_s_all_nodes": 1.0,
    "cpu_s_bench_parent": 0.1,
    "machine_busy_core_s": 2.0,
}


def block(height: int, envelopes: list[bytes], codes: list[str | None]) -> dict[str, Any]:
    return {
        "height": height,
        "txs": [
            {"tx_id": digest(e).hex(), "status": "ok" if c is None else "rejected", "code": c}
            for e, c in zip(envelopes, codes, strict=True)
        ],
    }


def finished_phase() -> tuple[Phase, Tracker]:
    """One lane of four: submitted at t=10.0; two commit at 10.1, one (rejected)
    at 10.3; the last was refused at submit."""
    tracker = Tracker("http://127.0.0.1:1")
    tracker.track("throughput", [LANE])
    job = ClientJob(0, "http://127.0.0.1:1", None, LANE, BATCH)
    phase = Phase("throughput", [LANE], [job], started=10.0, ended=11.0)
    phase.results[0] = {
        "submitted_at": [10.0, 10.0, 10.0, 10.0],
        "failed": {3: "mempool_full"},
        "stats": {"posts": 2},
        "cpu_s": 0.4,
        "post_ms": {"p50": 3.0},
    }
    tracker.on_frame(10.1, block(5, LANE[:2], [None, None]))
    tracker.on_frame(10.2, {"height": 6, "txs": []})  # a block of other transactions
    tracker.on_frame(10.3, block(7, LANE[2:3], ["no_such_asset"]))
    return phase, tracker


def test_summary_counts_commits_latency_and_failures() -> None:
    phase, tracker = finished_phase()
    summary = summarise(phase, tracker, dict(CPU))
    assert summary["offered_txs"] == 4
    assert summary["committed_txs"] == 3
    assert summary["committed_ok"] == 2
    # Two transactions after the first block's, over the 0.2 s between first and last commit.
    assert summary["committed_tx_per_s"] == 5.0
    assert summary["steady_window_s"] == 0.2
    # Latencies 100, 100 and 300 ms.
    assert summary["latency_ms"] == {"p50": 100, "p95": 300, "p99": 300, "mean": 166.67, "max": 300}
    assert summary["blocks"] == 2  # blocks holding the phase's transactions
    assert summary["mean_batch_size"] == 1.5
    assert summary["failures"] == {
        "refused_at_submit": {"mempool_full": 1},
        "committed_not_ok": {"rejected:no_such_asset": 1},
        "never_committed": 0,
        "total": 2,
    }
    assert summary["cpu"]["cpu_s_clients"] == 0.4
    assert summary["cpu"]["cpu_s_outside_bench_processes"] == 0.5  # 2.0 - 1.0 - 0.1 - 0.4
    assert summary["cpu"]["node_cpu_ms_per_committed_tx"] == 333.333
    assert summary["timed_out"] is False


def test_a_client_that_never_answered_leaves_its_transactions_never_committed() -> None:
    tracker = Tracker("http://127.0.0.1:1")
    tracker.track("latency", [LANE])
    job = ClientJob(0, "http://127.0.0.1:1", None, LANE, BATCH)
    phase = Phase("latency", [LANE], [job], errors=["client 0: boom"])
    summary = summarise(phase, tracker, dict(CPU))
    assert summary["committed_tx_per_s"] is None
    assert summary["latency_ms"]["p50"] is None
    assert summary["failures"]["never_committed"] == 4
    assert summary["client_errors"] == ["client 0: boom"]


def report_with(throughput: float, p50_ms: float, outside_s: float) -> dict[str, Any]:
    cpu = {
        "node_cpu_ms_per_committed_tx": 1.0,
        "machine_busy_cores": 1.5,
        "cpu_s_outside_bench_processes": outside_s,
        "machine_busy_core_s": 10.0,
    }
    return {
        "validators": 4,
        "ed25519": {"verify_per_s_one_core": 8000, "ceiling_tx_per_s": 4000.0},
        "throughput": {"mode": "independent", "committed_tx_per_s": throughput, "cpu": cpu},
        "latency": {"offered_tx_per_s": 100.0, "latency_ms": {"p50": p50_ms}},
    }


def test_finish_puts_the_headline_next_to_the_ceiling_and_targets() -> None:
    report = report_with(TARGET_TX_PER_S, TARGET_P50_MS - 1, outside_s=0.5)
    finish(report)
    summary = report["summary"]
    assert summary["committed_tx_per_s"] == TARGET_TX_PER_S
    assert summary["ratio_to_ceiling"] == 0.5
    assert summary["throughput_target_met"] is True
    assert summary["latency_target_met"] is True
    assert "warning" not in summary
    # 4 validators each verify every signature: 4 / 8000 s = 0.5 ms of the 1 ms.
    assert report["cpu_budget_per_tx"]["of_which_ed25519_verify_ms"] == 0.5
    assert report["cpu_budget_per_tx"]["ed25519_share"] == 0.5
    assert report["cpu_budget_per_tx"]["cpu_bound_tx_per_s"] == 2000.0


def test_finish_warns_when_other_programs_took_the_cpu() -> None:
    report = report_with(100.0, TARGET_P50_MS, outside_s=3.0)
    finish(report)
    assert report["summary"]["throughput_target_met"] is False
    assert report["summary"]["latency_target_met"] is False
    assert "throughput: 3.0 of 10.0 busy core-seconds" in report["summary"]["warning"]


def test_observer_lag_is_arrival_on_the_observer_minus_on_the_validator() -> None:
    job = WatchJob("v0", "http://127.0.0.1:1", "o0", "http://127.0.0.1:2", None, 1)
    phase = Phase("throughput", [], [], started=1.0, ended=2.0)
    seen = {
        "arrivals": {
            "v0": [(1, 1.00), (2, 1.10), (3, 1.20)],
            "o0": [(1, 1.05), (2, 1.30)],
        },
        "at_validator": [(1.00, 1, 0), (1.10, 2, 1), (1.20, 3, 1)],
        "samples": [(1.5, 2, 3, 1, "v0"), (2.5, 9, 3, 1, "v0")],  # the second is after the run
    }
    summary = observer_summary(seen, job, phase, (1, 3), None)
    assert summary["lag_ms"]["p50"] == 50.0
    assert summary["lag_ms"]["max"] == 200.0
    assert summary["lag_ms"]["missing_on_observer"] == 1
    assert summary["lag_blocks_at_validator_arrival"]["max"] == 2
    assert summary["lag_blocks_status"]["samples"] == 1
    assert summary["lag_blocks_status"]["max"] == 2

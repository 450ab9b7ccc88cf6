"""The network benchmark end to end, as ``scripts/bench`` runs it, on a tiny workload.

It starts four validators as processes, sends a few chains from two client
processes and a short paced run, and must print a report in which every
offered transaction committed and the validators agree.  No figure is
judged: timing targets belong to the benchmark's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Bounds the whole run, so a hung benchmark fails the test instead of the suite.
RUN_TIMEOUT_S = 120


# 15 s on an idle two-core host, 25 s on a busy one: too long for the fast part.
@pytest.mark.slow
def test_the_network_benchmark_runs_end_to_end(bench_base_port: int, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "scripts/bench_network.py",
        "--validators=4",
        "--clients=2",
        "--chains=2",
        "--rate=20",
        "--duration-s=1",
        "--verify-count=200",
        "--stall-s=10",
        f"--base-port={bench_base_port}",
        f"--work-dir={tmp_path}",
    ]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert "error" not in report
    throughput, latency = report["throughput"], report["latency"]
    assert throughput["offered_txs"] == 2 * 15  # two independent chains
    assert throughput["committed_ok"] == throughput["offered_txs"]
    assert throughput["failures"]["total"] == 0
    assert latency["offered_txs"] == 20
    assert latency["committed_ok"] == 20
    assert latency["latency_ms"]["p50"] is not None
    assert report["agreement"]["all_agree"] is True
    assert set(report["down"]) == {"v0", "v1", "v2", "v3"}
    assert report["summary"]["committed_tx_per_s"] == throughput["committed_tx_per_s"]
    assert list(tmp_path.iterdir()) == []  # the network directory is removed

"""Whole-cluster simulation: many seeds under every fault, and a checker that
is shown to fail when the protocol is broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.sim.__main__ import main as sim_main
from consensus.sim.cluster import Cluster, SimConfig, run
from consensus.sim.network import FAULT_KINDS, Crash

ALL_FAULTS = frozenset(FAULT_KINDS)
ROOT = Path(__file__).resolve().parents[2]


def failures(validators: int, seeds: range, **overrides: object) -> list[str]:
    config = SimConfig(validators=validators, faults=ALL_FAULTS, **overrides)  # type: ignore[arg-type]
    lines = []
    for seed in seeds:
        result = run(seed, config)
        if not result.ok:
            problems = "; ".join(result.safety_violations + result.liveness_failures)
            lines.append(
                f"seed {seed}: {problems[:200]} -- replay: python -m consensus.sim --seed {seed} "
                f"--validators {validators} --faults all"
                + (" --fake-signatures" if overrides.get("fake_signatures") else "")
            )
    return lines


# 320 seeds in the default suite: 200 with four validators, 120 with seven,
# every fault kind enabled in each (the plan draws which ones bite).
@pytest.mark.slow
@pytest.mark.no_cover
@pytest.mark.parametrize("first", range(0, 200, 50))
def test_four_validators_stay_safe_and_live_under_all_faults(first: int) -> None:
    assert failures(4, range(first, first + 50)) == []


@pytest.mark.slow
@pytest.mark.no_cover
@pytest.mark.parametrize("first", range(0, 120, 40))
def test_seven_validators_stay_safe_and_live_under_all_faults(first: int) -> None:
    assert failures(7, range(first, first + 40)) == []


@pytest.mark.slow
@pytest.mark.no_cover
def test_checker_reports_violations_of_a_replica_with_a_2f_quorum() -> None:
    config = SimConfig(
        validators=4,
        faults=frozenset({"byzantine"}),
        broken="quorum",
        byzantine_behaviours=("equivocate",),
    )
    results = [run(seed, config) for seed in range(40)]
    assert sum(len(r.safety_violations) for r in results) > 0
    assert any("agreement" in v for r in results for v in r.safety_violations)


@pytest.mark.slow
@pytest.mark.no_cover
def test_checker_reports_violations_of_a_replica_that_skips_the_new_view_check() -> None:
    config = SimConfig(
        validators=4,
        faults=ALL_FAULTS,
        broken="new_view_check",
        byzantine_behaviours=("rewrite_new_view",),
    )
    results = [run(seed, config) for seed in range(60)]
    assert any("agreement" in v for r in results for v in r.safety_violations)


def test_checker_reports_a_replica_left_alone_in_a_higher_view() -> None:
    """A replica that votes to change the view on its own timer (as every
    replica once did) is left alone in a higher view after a
    partition or a pause heals; the honest replica is not, on the same seeds."""
    faults = frozenset({"pause", "partition", "drop"})
    eager = SimConfig(validators=4, faults=faults, broken="eager_view_change", fake_signatures=True)
    honest = SimConfig(validators=4, faults=faults, fake_signatures=True)
    stranded = [v for seed in (15, 25) for v in run(seed, eager).liveness_failures]
    assert stranded and all(v.startswith("stranded: ") for v in stranded)
    assert all(run(seed, honest).ok for seed in (15, 25))


def saturated_primary_killed(seed: int) -> Cluster:
    """Clients offer 100 requests/s where a host can check and execute about
    60 (8 ms each): a backlog far larger than a batch builds up and the
    primary works through it with its window full.  At 4 s the primary is
    killed (restarting at 12 s); the new primary inherits the backlog."""
    config = SimConfig(
        validators=4,
        requests=600,
        heal_ms=6_000,
        cpu_ms_per_request=8,
        fake_signatures=True,
    )
    cluster = Cluster(seed, config)
    cluster.plan.crashes.append(Crash(0, 4_000, 12_000))
    return cluster


@pytest.mark.parametrize("seed", range(2))
def test_killing_a_saturated_primary_changes_the_view_exactly_once(seed: int) -> None:
    cluster = saturated_primary_killed(seed)
    result = cluster.run()
    assert result.ok, result.liveness_failures + result.safety_violations
    # One fault, one view change: no new primary deposed while it drains the
    # backlog (replicas that did went through 6 to 13 views on these runs).
    assert [h.replica.view for h in cluster.hosts if h.replica is not None] == [1, 1, 1, 1]


def test_the_same_seed_replays_the_same_run() -> None:
    config = SimConfig(validators=4, faults=ALL_FAULTS)
    first, second = run(11, config), run(11, config)
    assert first.trace_digest == second.trace_digest
    assert first.heights == second.heights and first.end_ms == second.end_ms
    assert run(12, config).trace_digest != first.trace_digest


def test_the_trace_does_not_depend_on_the_interpreter_hash_seed() -> None:
    def trace(hash_seed: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "consensus.sim", "--seed", "5", "--faults", "all"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        return out.splitlines()[0].split(" trace ")[1].split()[0]

    assert trace("1") == trace("2")


@pytest.mark.slow
def test_cli_prints_replay_lines_and_exits_nonzero_on_violations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = sim_main(["--seeds", "40", "--faults", "byzantine", "--broken", "quorum"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    fail_lines = [line for line in lines if line.startswith("FAIL seed")]
    assert fail_lines and all(
        "replay: python -m consensus.sim --seed" in line for line in fail_lines
    )
    assert lines[-1].startswith("40 seeds, ") and "safety violations" in lines[-1]
    assert not lines[-1].startswith("40 seeds, 0 safety violations, 0 liveness")


def test_cli_exits_zero_and_prints_the_summary_on_clean_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sim_main(["--seeds", "5", "--validators", "4", "--faults", "drop,dup"]) == 0
    assert (
        capsys.readouterr().out.strip().splitlines()[-1]
        == "5 seeds, 0 safety violations, 0 liveness failures"
    )


def test_cli_rejects_unknown_fault_kinds() -> None:
    with pytest.raises(SystemExit):
        sim_main(["--faults", "meteor"])


@pytest.mark.soak
@pytest.mark.skipif(
    not os.environ.get("PROVENET_SOAK"), reason="set PROVENET_SOAK=1 for the long soak"
)
def test_soak_thousands_of_seeds_with_fast_signatures() -> None:
    seeds = int(os.environ.get("PROVENET_SOAK_SEEDS", "5000"))
    assert failures(4, range(10_000, 10_000 + seeds), fake_signatures=True) == []
    assert failures(7, range(20_000, 20_000 + seeds // 5), fake_signatures=True) == []


@pytest.mark.slow
@pytest.mark.no_cover
def test_memory_stays_bounded_over_a_long_run() -> None:
    """Hundreds of heights through a small window: every table a replica
    keeps, and the records its host keeps on disk, stay within the window."""
    config = SimConfig(
        validators=4,
        faults=frozenset({"drop", "crash"}),
        requests=600,
        heal_ms=20_000,
        fake_signatures=True,
        max_batch_size=2,
    )
    cluster = Cluster(3, config)
    result = cluster.run()
    assert result.ok
    window = config.window_size
    for host in cluster.hosts:
        replica = host.replica
        assert replica is not None and replica.delivered.height > 10 * window
        assert len(replica.log) <= window
        assert len(replica.prepared_certs) <= window
        assert len(replica.committed) <= window
        assert len(replica.executed_roots) <= window + 1
        assert len(replica.checkpoint_votes) <= window // config.checkpoint_interval + 2
        assert len(replica.sent) <= 4 * window
        assert len(host.records) <= 8 * window

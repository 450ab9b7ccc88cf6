"""An observer behind a man in the middle, under SDK load, for each forgery.

A 4-validator network with one observer, every node its own ``provenet
node run --config`` process (tests/faults/harness.py).  The observer's
config names a proxy (tests/faults/mitm.py, in the test process on
127.0.0.1) as validator v1's API, and v1 first among its sources; the
proxy relays v1 and forges every block it relays in one way per case.

An observer follows one source's block stream for as long as it keeps up,
and hears every validator's certified tips on a tips-only stream.  The
harness starts it once the validators answer, so its first block stream is
the liar's: it is served forged full blocks (from height 1) as well as
forged tips.  Under load, the observer must refuse every forged block it is
served (an alert naming v1, the block neither stored nor served), keep
following from the honest validators, and end on the validators' chain:
the harness's history checker reads every node's chain, the observer's
included, and finds every acknowledged transaction in each.  The fault
heals when the proxy turns honest; commits and the observer's catch-up
after that are measured like any other fault's.

These run with ``PROVENET_FAULTS=1 scripts/test tests/faults -m faults -s``
(about 20 s a case); the default run checks each forgery against the
observer's block check in test_mitm.py, in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from netfixture import free_base_port

from faults.harness import (
    REQUEST_TIMEOUT_S,
    Campaign,
    FaultReport,
    ProcessNetwork,
    WorkloadPlan,
    now_s,
)
from faults.mitm import EXPECTED_ALERT, FORGERIES, MitmProxy, running_proxy
from node.sdk.genesis import load_genesis

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

needs_faults = pytest.mark.skipif(
    not os.environ.get("PROVENET_FAULTS"), reason="set PROVENET_FAULTS=1 for the fault campaign"
)

LIAR = "v1"
OBSERVER = "o0"
PHASE_S = 6.0
# Bounded wait for the observer to have refused a forged full block (it
# leaves the liar's block stream at the first, so one is what it gets) and,
# counting tips, at least this many forgeries in all.
MIN_ALERTS = 2
ALERTS_TIMEOUT_S = 30.0
# Bounded wait, after the heal, for a transaction sent after it to commit.
HEAL_WAIT_S = 30.0
PLAN = WorkloadPlan(rate_tx_s=20, window=8)


def route_through(net: ProcessNetwork, observer: str, validator: str, url: str) -> None:
    """Point ``observer``'s source ``validator`` at ``url`` in its config.json,
    and make it the first source, the one the observer begins following."""
    config_file = net.entry(observer).config
    config = json.loads(config_file.read_text())
    for peer in config["peers"]:
        if peer["name"] == validator:
            peer["api_url"] = url
    config["peers"].sort(key=lambda peer: peer["name"] != validator)
    config_file.write_text(json.dumps(config, indent=2))


def proxy_port(net: ProcessNetwork) -> int:
    """A free port on 127.0.0.1 that is none of the network's own (not started yet)."""
    taken = set()
    for entry in net.network.nodes:
        taken |= {urlsplit(entry.api_url).port, urlsplit(entry.peer_url).port}
    for _ in range(10):
        port = free_base_port(1)
        if port not in taken:
            return port
    raise AssertionError("no free port for the proxy")


async def observer_alerts(net: ProcessNetwork) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The observer's recent alerts (status) and its alert counters by (kind, validator)."""
    status = await net.status(OBSERVER) or {}
    counts: dict[str, float] = {}
    reply = await net.get(OBSERVER, "/metrics", REQUEST_TIMEOUT_S)
    for line in reply.body.decode().splitlines():
        if line.startswith("provenet_observer_alerts_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.removeprefix("provenet_observer_alerts_total")] = float(value)
    return list(status.get("alerts", [])), counts


def block_alerts(alerts: list[dict[str, Any]]) -> int:
    """The alerts about a served block, not a tip (node/runtime/follower.py's tip
    alerts say "tip at height ..." or "tip is for chain ...")."""
    return sum(1 for alert in alerts if not str(alert["message"]).startswith("tip "))


async def forged_under_load(tmp_path: Path, mode: str) -> tuple[FaultReport, dict[str, Any]]:
    net = ProcessNetwork.create(tmp_path, validators=4, observers=1)
    quorum = load_genesis(net.network.root / "genesis.json").validator_set().quorum
    port = proxy_port(net)
    proxy = MitmProxy(net.api_url(LIAR), quorum, mode, upstream_ssl=net.ssl())
    with running_proxy(proxy, port) as proxy_url:
        route_through(net, OBSERVER, LIAR, proxy_url)
        async with net:
            campaign = Campaign(f"mitm-{mode}", net, PLAN)
            await campaign.start()
            fault = campaign.faults.begin(f"mitm_{mode}", OBSERVER)
            deadline = now_s() + ALERTS_TIMEOUT_S
            alerts, counts = await observer_alerts(net)
            while now_s() < max(deadline, fault.at_s + PHASE_S):
                # A changed transaction cannot be forged into a tip: a block's is
                # the only alert that case can give.
                enough = 1 if mode == "alter_payload" else MIN_ALERTS
                if (
                    now_s() >= fault.at_s + PHASE_S
                    and block_alerts(alerts) > 0
                    and sum(counts.values()) >= enough
                ):
                    break
                await asyncio.sleep(0.5)
                alerts, counts = await observer_alerts(net)
            # The path to v1 turns honest: the fault is over.
            proxy.mode = None
            campaign.faults.heal(fault)
            healed_s = fault.healed_s
            assert healed_s is not None
            await campaign.workload.wait_for_ack(lambda a: a.submitted_s >= healed_s, HEAL_WAIT_S)
            await campaign.wait_caught_up(fault)
            report = await campaign.finish()
            alerts, counts = await observer_alerts(net)
    detail = {
        "scenario": f"mitm-{mode}",
        # Forged full blocks and forged tips (tips-only streams), and the
        # observer's alerts about blocks (not tips) in its recent alerts.
        "forged_blocks": proxy.forged_blocks - proxy.forged_tips,
        "forged_tips": proxy.forged_tips,
        "relayed_requests": proxy.relayed_requests,
        "streams": proxy.streams,
        "tip_streams": proxy.tip_streams,
        "upstream_failures": proxy.upstream_failures,
        "alert_counts": counts,
        "block_alerts": block_alerts(alerts),
        "alert_kinds": sorted({a["kind"] for a in alerts}),
        "alert_validators": sorted({a["validator"] for a in alerts}),
    }
    print("MITM " + json.dumps(detail, sort_keys=True), flush=True)
    return report, detail


@pytest.mark.faults
@needs_faults
@pytest.mark.parametrize("mode", sorted(FORGERIES))
async def test_an_observer_refuses_every_forged_block_and_follows_the_honest_chain(
    tmp_path: Path, mode: str
) -> None:
    report, detail = await forged_under_load(tmp_path, mode)
    kind = EXPECTED_ALERT[mode]
    # The observer was served forged full blocks (not only tips) and refused one.
    assert detail["forged_blocks"] > 0 and detail["block_alerts"] > 0, detail
    # Every forged block was refused, as what it is, and blamed on the liar only.
    assert detail["alert_counts"], detail
    assert set(detail["alert_counts"]) == {f'{{kind="{kind}",validator="{LIAR}"}}'}, detail
    assert detail["alert_kinds"] == [kind] and detail["alert_validators"] == [LIAR], detail
    # Nothing forged was stored: the observer holds the validators' chain, and
    # every acknowledged transaction, at the end.
    assert report.final_heights[OBSERVER] == report.final_heights["v0"], report
    report.assert_ok()

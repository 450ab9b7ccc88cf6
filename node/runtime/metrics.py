"""Prometheus metrics of one node, in a registry of its own.

A registry per node (not the process-wide default) lets tests run several
nodes in one process without their counters colliding.  The replica's own
drop counters (``Replica.dropped``) are read at scrape time by a collector,
so the core stays free of any metrics library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class _ReplicaDrops(Collector):
    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "provenet_replica_dropped_messages",
            "Peer messages and requests the replica refused, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self._read().items()):
            family.add_metric([reason], count)
        yield family


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.height = Gauge(
            "provenet_height", "Height of the last executed block", registry=registry
        )
        self.view = Gauge("provenet_view", "Current consensus view", registry=registry)
        self.mempool_size = Gauge(
            "provenet_mempool_transactions", "Transactions in the mempool", registry=registry
        )
        self.blocks = Counter("provenet_blocks_executed", "Blocks executed", registry=registry)
        self.txs = Counter(
            "provenet_transactions_executed",
            "Transactions executed, by receipt status",
            ["status"],
            registry=registry,
        )
        self.submissions = Counter(
            "provenet_submissions",
            "Transactions submitted to this node, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.dropped = Counter(
            "provenet_transactions_dropped",
            "Transactions dropped before execution, by code",
            ["code"],
            registry=registry,
        )
        self.block_execute_seconds = Histogram(
            "provenet_block_execute_seconds",
            "Time to execute and store one block",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.peer_connected = Gauge(
            "provenet_peer_connected",
            "1 when the outbound link to a peer is up",
            ["peer"],
            registry=registry,
        )
        self.peer_frames = Counter(
            "provenet_peer_frames",
            "Peer frames by direction and outcome",
            ["direction", "outcome"],
            registry=registry,
        )
        self.observer_alerts = Counter(
            "provenet_observer_alerts",
            "Blocks an observer rejected, by check and serving validator",
            ["kind", "validator"],
            registry=registry,
        )
        self.peer_rejected = Counter(
            "provenet_peer_connections_rejected",
            "Inbound peer connections closed, by reason",
            ["reason"],
            registry=registry,
        )
        self.observer_lag_blocks = Gauge(
            "provenet_observer_lag_blocks",
            "Highest certified height an observer has seen minus its own",
            registry=registry,
        )
        self.observer_source_switches = Counter(
            "provenet_observer_source_switches",
            "Times an observer left a validator it followed, by validator and reason",
            ["validator", "reason"],
            registry=registry,
        )
        # Set once this node's results differ from the certified ones
        # (node/runtime/divergence.py): the value is the first differing
        # height, the labels name the transaction and both outcomes.  A node
        # stops at its first divergence, so there is at most one series.
        self.diverged = Gauge(
            "provenet_execution_diverged_height",
            "First height at which this node's execution diverged from the certified results, "
            "with the transaction and its outcome here and under the certificate",
            ["kind", "tx_id", "own", "certified"],
            registry=registry,
        )
        self.halted = Gauge(
            "provenet_execution_halted",
            "1 once this node stopped executing because its results diverged",
            registry=registry,
        )

    def watch_replica(self, read: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_ReplicaDrops(read))

"""What the listeners report: Prometheus series, and a log line when a port starts or stops shedding."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter

log = logging.getLogger("provenet.listener")

# The node logs that a port stopped shedding after this long without shedding.
SHED_QUIET_S = 10.0


class ListenerMetrics:
    """The listeners' Prometheus series, registered in the node's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.shed = MetricCounter(
            "provenet_connections_shed",
            "Connections closed by a connection cap or timeout, by port and reason",
            ["port", "reason"],
            registry=registry,
        )
        self.open = Gauge(
            "provenet_connections_open",
            "Connections held, TLS handshakes included, by port",
            ["port"],
            registry=registry,
        )
        self.malformed_http = MetricCounter(
            "provenet_malformed_http_requests",
            "Requests aiohttp's HTTP parser refused, by port",
            ["port"],
            registry=registry,
        )


_SHED_REASONS = {
    "per_address": "the per-address cap is reached, by {address}",
    "per_port": "the per-port cap is reached, latest from {address}",
    "evicted": "the port is full: evicting strangers, first from {address}",
    "accept_failed": "accept() failed: {address}",
}


class ShedLog:
    """One WARNING line when a port starts shedding, one INFO line when it stops."""

    def __init__(self, kind: str, label: str, metrics: ListenerMetrics) -> None:
        self.kind = kind
        self.label = label
        self._metrics = metrics
        self._shed_since: float | None = None
        self._last_shed = 0.0
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def shed(self, reason: str, address: str) -> None:
        """Count one connection refused or closed for ``reason``; log if it is the first."""
        self._metrics.shed.labels(self.kind, reason).inc()
        now = time.monotonic()
        self._last_shed = now
        self._count += 1
        if self._shed_since is not None:
            return
        self._shed_since = now
        log.warning(
            "%s: shedding connections (%s); counted in "
            "provenet_connections_shed_total until it stops",
            self.label,
            _SHED_REASONS.get(reason, reason).format(address=address),
        )
        self._timer = asyncio.get_running_loop().call_later(SHED_QUIET_S, self._check_quiet)

    def _check_quiet(self) -> None:
        self._timer = None
        assert self._shed_since is not None
        now = time.monotonic()
        quiet_at = self._last_shed + SHED_QUIET_S
        if now < quiet_at:
            self._timer = asyncio.get_running_loop().call_later(quiet_at - now, self._check_quiet)
            return
        log.info(
            "%s: stopped shedding: %d connections shed over %.1f s",
            self.label,
            self._count,
            self._last_shed - self._shed_since,
        )
        self._shed_since = None
        self._count = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

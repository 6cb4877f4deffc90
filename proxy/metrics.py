"""Prometheus metrics of a :class:`ProxyServer`, computed at scrape time.

Links count with plain integers on the hot path; this collector turns them
into metric families only when ``/metrics`` is read.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from etcdlab.proxy.counters import DELAY_BUCKETS
from etcdlab.proxy.server import ProxyServer


class ProxyCollector(Collector):
    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        prefix = "etcdlab_proxy"
        data = CounterMetricFamily(
            f"{prefix}_bytes", "Bytes read from each side", labels=["link", "direction"]
        )
        frames = CounterMetricFamily(
            f"{prefix}_frames",
            "HTTP/2 frames parsed in full, by type",
            labels=["link", "direction", "type"],
        )
        applied = CounterMetricFamily(
            f"{prefix}_faults_applied", "Fault actions taken", labels=["link", "fault", "action"]
        )
        accepted = CounterMetricFamily(
            f"{prefix}_connections", "Connections accepted", labels=["link"]
        )
        refused = CounterMetricFamily(
            f"{prefix}_connections_refused", "Connections refused", labels=["link"]
        )
        resets = CounterMetricFamily(
            f"{prefix}_connections_reset", "Connections reset by a fault", labels=["link"]
        )
        errors = CounterMetricFamily(
            f"{prefix}_protocol_errors", "Connections closed for bad HTTP/2", labels=["link"]
        )
        unreached = CounterMetricFamily(
            f"{prefix}_upstream_failures",
            "Connections closed because the upstream could not be reached",
            labels=["link"],
        )
        active = GaugeMetricFamily(
            f"{prefix}_connections_active", "Connections open now", labels=["link"]
        )
        delay = HistogramMetricFamily(
            f"{prefix}_added_delay_seconds", "Delay added to delivered bytes", labels=["link"]
        )
        for name, link in self.server.links.items():
            counters = link.counters
            for direction, count in counters.bytes.items():
                data.add_metric([name, direction], count)
            for (direction, kind), count in counters.frames.items():
                frames.add_metric([name, direction, kind], count)
            for (fault, action), count in counters.faults_applied.items():
                applied.add_metric([name, fault, action], count)
            accepted.add_metric([name], counters.connections_total)
            refused.add_metric([name], counters.connections_rejected)
            resets.add_metric([name], counters.connections_reset)
            errors.add_metric([name], counters.protocol_errors)
            unreached.add_metric([name], counters.upstream_failures)
            active.add_metric([name], counters.connections_active)
            cumulative, buckets = 0, []
            for bound, count in zip(
                [*map(str, DELAY_BUCKETS), "+Inf"], counters.delay_buckets, strict=True
            ):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            delay.add_metric([name], buckets, counters.delay_sum)
        lag = GaugeMetricFamily(
            f"{prefix}_loop_lag_seconds",
            "How late the event loop ran a 50 ms timer",
            labels=["which"],
        )
        lag.add_metric(["max"], self.server.loop_lag_max)
        lag.add_metric(["last"], self.server.loop_lag_last)
        yield from (
            data,
            frames,
            applied,
            accepted,
            refused,
            resets,
            errors,
            unreached,
            active,
            delay,
            lag,
        )


def render(server: ProxyServer, registry: CollectorRegistry | None = None) -> bytes:
    """Prometheus text for ``server`` (a private registry unless one is given)."""
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ProxyCollector(server))
    return generate_latest(registry)

"""What a link has seen: plain integers, read by the metrics collector at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdlab.proxy.faults.base import DOWNSTREAM, UPSTREAM, Fault

# Upper bounds (seconds) of the added-delay histogram buckets.
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Counters:
    """Counts of one link."""

    connections_total: int = 0
    connections_active: int = 0
    connections_rejected: int = 0
    connections_reset: int = 0
    protocol_errors: int = 0
    # Accepted connections closed because the upstream could not be reached.
    upstream_failures: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: {UPSTREAM: 0, DOWNSTREAM: 0})
    # (direction, frame type name) -> count; only frames the link parsed in full
    # (header blocks always, every frame while a frame-aware fault is active).
    frames: dict[tuple[str, str], int] = field(default_factory=dict)
    # (fault name, what it did) -> count
    faults_applied: dict[tuple[str, str], int] = field(default_factory=dict)
    delay_buckets: list[int] = field(default_factory=lambda: [0] * (len(DELAY_BUCKETS) + 1))
    delay_sum: float = 0.0
    delay_count: int = 0
    # Peer links: connections attributed to each dialing member (X-Server-From).
    dialers: dict[str, int] = field(default_factory=dict)

    def applied(self, fault: Fault, what: str, count: int = 1) -> None:
        key = (fault.name, what)
        self.faults_applied[key] = self.faults_applied.get(key, 0) + count

    def delay(self, seconds: float) -> None:
        index = 0
        while index < len(DELAY_BUCKETS) and seconds > DELAY_BUCKETS[index]:
            index += 1
        self.delay_buckets[index] += 1
        self.delay_sum += seconds
        self.delay_count += 1

"""Timings of the emulated apiserver etcd client, in one validated, scalable place.

Defaults are the apiserver's (``storagebackend/factory/etcd3.go`` and
``--etcd-healthcheck-timeout``); :meth:`ClientConfig.scaled` shrinks every
duration by one ``time_scale`` factor for tests and demos.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from etcdlab.common.timescale import TimeScale

_DURATIONS = (
    "keepalive_time",
    "keepalive_timeout",
    "dial_timeout",
    "request_timeout",
    "attempt_timeout",
    "health_check_timeout",
    "health_check_interval",
    "endpoint_probe_interval",
    "retry_backoff_base",
    "retry_backoff_cap",
    "close_timeout",
)


@dataclass(frozen=True)
class ClientConfig:
    keepalive_time: float = 30.0
    """Idle time after which the client pings the server (gRPC keepalive time)."""

    keepalive_timeout: float = 10.0
    """How long a keepalive ping may go unanswered before the connection is closed
    and every call on it fails with UNAVAILABLE. Applied as both
    ``grpc.keepalive_timeout_ms`` and ``grpc.http2.ping_timeout_ms``: grpcio uses
    the latter for calls in flight. grpcio also applies it to its flow-control
    (BDP) pings, so a dead member is detected between ``keepalive_timeout`` and
    ``keepalive_time + keepalive_timeout`` after it stops answering (measured:
    2.0 s or 8.0 s with 6 s + 2 s)."""

    dial_timeout: float = 20.0
    """Longest wait for a connection (TCP and HTTP/2 handshake) to an endpoint."""

    request_timeout: float | None = None
    """Deadline of a call across all its attempts when the caller gives none.
    None, like the apiserver's client: keepalive, not a deadline, ends calls to a
    dead member."""

    attempt_timeout: float | None = None
    """Deadline of one attempt within a call (gRPC's per-try timeout). When it,
    not the call's deadline, passes, the attempt counts as failed and a safe
    call is retried by the retry policy. None: an attempt may use all the time
    the call has left."""

    health_check_timeout: float = 2.0
    """Deadline of one health probe (``--etcd-healthcheck-timeout``)."""

    health_check_interval: float = 1.0
    """Minimum time between the starts of two health probes (the rate limit)."""

    endpoint_probe_interval: float = 1.0
    """An endpoint that failed is skipped until a background probe (a Status call
    within the dial timeout) succeeds; probes start at most this often."""

    retry_backoff_base: float = 0.1
    """First retry delay of the default retry policy (exponential, full jitter)."""

    retry_backoff_cap: float = 2.0
    """Largest retry delay of the default retry policy."""

    retry_max_attempts: int = 6
    """Attempts (first one included) of the default retry policy."""

    close_timeout: float = 2.0
    """Deadline of the best-effort lease revokes sent on close."""

    health_key: bytes = b"/registry/health"
    """Key the health checker reads (the apiserver reads ``<prefix>/health``)."""

    seed: int = 0
    """Seed of the default retry policy's jitter (mixed with the client's name,
    so differently named clients jitter differently but repeatably)."""

    def __post_init__(self) -> None:
        for name in _DURATIONS:
            value = getattr(self, name)
            if name in ("request_timeout", "attempt_timeout") and value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number of seconds")
        if self.retry_backoff_cap < self.retry_backoff_base:
            raise ValueError("retry_backoff_cap must be at least retry_backoff_base")
        if self.retry_max_attempts < 1:
            raise ValueError("retry_max_attempts must be at least 1")
        if not self.health_key:
            raise ValueError("health_key must not be empty")

    def scaled(self, time_scale: float) -> ClientConfig:
        """This config with every duration multiplied by ``time_scale``."""
        scale = TimeScale(time_scale)
        changes: dict[str, float | None] = {}
        for name in _DURATIONS:
            value = getattr(self, name)
            changes[name] = None if value is None else scale.scaled(value)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel options carrying the keepalive and dial settings."""
        return [
            *keepalive_options(self.keepalive_time, self.keepalive_timeout),
            # gRPC's own connect deadline (default 20 s) follows the dial timeout.
            ("grpc.min_reconnect_backoff_ms", max(1, round(self.dial_timeout * 1000))),
        ]


def keepalive_options(time: float, timeout: float) -> list[tuple[str, int]]:
    """gRPC channel options for keepalive pings every ``time`` seconds, each
    failing the connection after ``timeout`` seconds, with or without calls."""
    timeout_ms = max(1, round(timeout * 1000))
    return [
        ("grpc.keepalive_time_ms", max(1, round(time * 1000))),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # grpcio takes the deadline of a ping sent during a call from here.
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]

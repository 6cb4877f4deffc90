"""Timings of the emulated apiserver etcd client, in one validated, scalable place.

Defaults are the apiserver's (``storagebackend/factory/etcd3.go``: keepalive
30 s / 10 s, dial timeout 20 s, checks 2 s), clientv3's (``client/v3/options.go``:
100 unary attempts, 25 ms between rounds over a quorum, 10% jitter) and
gRPC's (``backoff.DefaultConfig`` and ``minConnectTimeout``: reconnect after
1 s, x1.6, +-20%, at most 120 s, each connection attempt given at least 20 s).
:meth:`ClientConfig.scaled` shrinks every duration by one ``time_scale`` factor
for tests and demos.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from etcdlab.common.timescale import TimeScale

_DURATIONS = (
    "keepalive_time",
    "keepalive_timeout",
    "dial_timeout",
    "request_timeout",
    "attempt_timeout",
    "reconnect_backoff_base",
    "reconnect_backoff_cap",
    "min_connect_timeout",
    "retry_wait_between",
    "watch_retry_cap",
    "lease_retry_wait",
    "health_check_timeout",
    "ready_check_timeout",
    "health_check_interval",
    "close_timeout",
)
_OPTIONAL = ("request_timeout", "attempt_timeout")
_FRACTIONS = ("reconnect_backoff_jitter", "retry_jitter")

Balancer = Literal["round_robin", "sticky"]
BALANCERS: tuple[Balancer, ...] = ("round_robin", "sticky")


@dataclass(frozen=True)
class ClientConfig:
    keepalive_time: float = 30.0
    """gRPC keepalive time: a connection with calls in flight that has read
    nothing for this long sends a PING."""

    keepalive_timeout: float = 10.0
    """How long that PING may go unanswered before the connection is closed and
    every call on it fails with UNAVAILABLE."""

    keepalive_without_calls: bool = False
    """clientv3's ``PermitWithoutStream``: ping connections that have no call
    in flight too. The apiserver leaves it off, and etcd (whose enforcement
    policy does not permit pings without streams) answers an idle connection's
    third ping within two hours with GOAWAY ``too_many_pings``."""

    dial_timeout: float = 20.0
    """clientv3's ``DialTimeout``: how long :meth:`EtcdClient.connect` waits for
    the first connection to become ready (``clientv3.New`` with ``WithBlock``)."""

    request_timeout: float | None = None
    """Deadline of a call across all its attempts when the caller gives none.
    None, like the apiserver's client: keepalive, not a deadline, ends calls to a
    dead member."""

    attempt_timeout: float | None = None
    """Deadline of one attempt within a call (gRPC's per-try timeout). When it,
    not the call's deadline, passes, the attempt counts as failed and a
    repeatable call is retried by the retry policy. None: an attempt may use all
    the time the call has left."""

    balancer: Balancer = "round_robin"
    """How calls are spread over the ready connections. ``round_robin`` is
    clientv3 since v3.4 (gRPC's policy of that name); ``sticky`` keeps every
    call on one connection until it stops being ready, like the pinned
    endpoint of etcd <= 3.3 clients."""

    reconnect_backoff_base: float = 1.0
    """gRPC connection backoff: wait after the first failed connection attempt."""

    reconnect_backoff_multiplier: float = 1.6
    reconnect_backoff_jitter: float = 0.2
    """Each backoff after the first is spread uniformly by +- this fraction."""

    reconnect_backoff_cap: float = 120.0
    min_connect_timeout: float = 20.0
    """gRPC's ``minConnectTimeout``: the least time one connection attempt (TCP
    and the HTTP/2 handshake) is given; a longer backoff gives it that long."""

    retry_max_attempts: int = 100
    """clientv3's ``MaxUnaryRetries``: attempts of a call, the first included."""

    retry_wait_between: float = 0.025
    """clientv3's ``BackoffWaitBetween``: the wait after every round of retries
    over a quorum of endpoints (the retries in between go at once)."""

    retry_jitter: float = 0.1
    """clientv3's ``BackoffJitterFraction``: that wait is spread by +- this."""

    watch_retry_cap: float = 0.1
    """A watch stream that failed as unavailable is reopened after a wait that
    starts at 1 ms and grows by a quarter each time, up to this (clientv3's
    ``maxBackoff``)."""

    lease_retry_wait: float = 0.5
    """Wait before reopening a failed lease keep-alive stream (clientv3's
    ``retryConnWait``)."""

    health_check_timeout: float = 2.0
    """Deadline of the livez ``etcd`` check's probe (``--etcd-healthcheck-timeout``)."""

    ready_check_timeout: float = 2.0
    """Deadline of the readyz ``etcd-readiness`` check's probe
    (``--etcd-readycheck-timeout``)."""

    health_check_interval: float = 1.0
    """How often each check is asked (start to start), like a prober polling
    livez and readyz; the checks themselves probe etcd at most once per half
    their timeout and answer the last result in between."""

    close_timeout: float = 2.0
    """Deadline of the best-effort lease revokes sent on close."""

    health_key: bytes = b"/registry/health"
    """Key the checks read (the apiserver reads ``<prefix>/health``)."""

    seed: int = 0
    """Seed of the client's randomness (retry and reconnect jitter, the
    round-robin start), mixed with the client's name so differently named
    clients differ but repeat."""

    def __post_init__(self) -> None:
        for name in _DURATIONS:
            value = getattr(self, name)
            if name in _OPTIONAL and value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number of seconds")
        for name in _FRACTIONS:
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        if not math.isfinite(self.reconnect_backoff_multiplier) or (
            self.reconnect_backoff_multiplier < 1
        ):
            raise ValueError("reconnect_backoff_multiplier must be a finite number >= 1")
        if self.reconnect_backoff_cap < self.reconnect_backoff_base:
            raise ValueError("reconnect_backoff_cap must be at least reconnect_backoff_base")
        if self.retry_max_attempts < 1:
            raise ValueError("retry_max_attempts must be at least 1")
        if self.balancer not in BALANCERS:
            raise ValueError(f"balancer must be one of {', '.join(BALANCERS)}")
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

    def channel_options(self, connect_timeout: float) -> list[tuple[str, int]]:
        """grpcio options of one connection attempt that may take ``connect_timeout``."""
        return [
            # One channel is one connection: never shared with another channel.
            ("grpc.use_local_subchannel_pool", 1),
            *keepalive_options(
                self.keepalive_time, self.keepalive_timeout, self.keepalive_without_calls
            ),
            # grpcio's own connect deadline ("min_reconnect_backoff" in its
            # naming); the connection also enforces it on the injected clock.
            ("grpc.min_reconnect_backoff_ms", _ms(connect_timeout)),
        ]


def keepalive_options(
    time: float, timeout: float, without_calls: bool = False
) -> list[tuple[str, int]]:
    """grpcio options that ping like a Go client with keepalive ``time`` and
    ``timeout``: a connection with calls in flight that read nothing for ``time``
    is pinged and closed if the ping is unanswered after ``timeout``.

    grpcio takes a ping's deadline from ``grpc.http2.ping_timeout_ms`` (its
    ``keepalive_timeout_ms`` alone left a call hanging on a stopped server), and
    applies it to every ping, its flow-control (BDP) probes included: with those
    on, the probe sent after a response closed a stalled connection
    ``timeout`` after its last read instead of ``time + timeout``. A Go client's
    BDP pings have no deadline, so grpcio's are turned off; the small messages
    etcd carries never need a window beyond the default. ``max_pings_without_data
    = 0`` lets keepalive keep pinging a connection whose only call is an idle
    watch (grpcio stops after two pings without data by default; Go does not).
    """
    timeout_ms = _ms(timeout)
    return [
        ("grpc.keepalive_time_ms", _ms(time)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(without_calls)),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.bdp_probe", 0),
    ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))

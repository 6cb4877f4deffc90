"""Timings and identity of one client-go style leader elector."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from etcdlab.common.timescale import TimeScale


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Validated like client-go's ``NewLeaderElector``, in the same order.

    Every duration is in seconds of the injected clock.
    """

    identity: str
    """Who this candidate is; written as the record's holder identity."""

    name: str = "etcdlab-controller"
    """Lease name: the record lives at ``/registry/leases/<namespace>/<name>``."""

    namespace: str = "kube-system"

    lease_duration: float = 15.0
    """How long a non-leader waits, after it last saw the record change, before it
    may take the lease over. Measured on the candidate's own clock from the moment
    it observed the change, never from timestamps inside the record."""

    renew_deadline: float = 10.0
    """How long the leader keeps retrying a failing renewal before stepping down
    (``wait.PollUntilContextTimeout``'s timeout; requests in flight then are
    cancelled)."""

    retry_period: float = 2.0
    """Pause between attempts: a failing renewal is retried every ``retry_period``
    (start to start, or at once after a longer attempt), a successful one is
    followed by a pause of ``retry_period``; acquisition attempts are
    ``retry_period`` stretched by a random factor up to ``jitter_factor`` apart
    (end to start)."""

    request_timeout_floor: float = 1.0
    """The least :attr:`request_timeout` may be."""

    jitter_factor: float = 1.2
    """``wait.JitterUntil``'s factor: an acquire retry waits
    ``retry_period * (1 + U[0, 1) * jitter_factor)``."""

    release_on_cancel: bool = False
    """Give the lease up (empty holder) when the elector is cancelled while leading,
    so a successor need not wait ``lease_duration``. The leader's own work must be
    finished by then or two processes act at once."""

    def __post_init__(self) -> None:
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if self.renew_deadline <= self.jitter_factor * self.retry_period:
            raise ValueError("renew_deadline must be greater than retry_period * jitter_factor")
        for field in (
            "lease_duration",
            "renew_deadline",
            "retry_period",
            "jitter_factor",
            "request_timeout_floor",
        ):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be greater than zero")
        if not self.identity:
            raise ValueError("identity must not be empty")
        if not self.name or "/" in self.name:
            raise ValueError("name must be a non-empty lease name without '/'")
        if not self.namespace or "/" in self.namespace:
            raise ValueError("namespace must be a non-empty name without '/'")

    @property
    def request_timeout(self) -> float:
        """Deadline of each Get, Create or Update of the lock: ``max(1 s,
        renew_deadline / 2)``, what ``resourcelock.NewFromKubeconfig`` sets as the
        client's timeout so that one hung request cannot cost the lease."""
        return max(self.request_timeout_floor, self.renew_deadline / 2)

    @property
    def key(self) -> bytes:
        """Where the apiserver would store this coordination.k8s.io Lease."""
        return f"/registry/leases/{self.namespace}/{self.name}".encode()

    def scaled(self, time_scale: float) -> LeaderElectionConfig:
        """The same config with every duration multiplied by ``time_scale``."""
        scale = TimeScale(time_scale)
        return dataclasses.replace(
            self,
            lease_duration=scale.scaled(self.lease_duration),
            renew_deadline=scale.scaled(self.renew_deadline),
            retry_period=scale.scaled(self.retry_period),
            request_timeout_floor=scale.scaled(self.request_timeout_floor),
        )

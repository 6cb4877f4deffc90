"""What the control plane reports, and to whom: a listener, as the elector has.

Every component of the plane takes a :class:`PlaneListener` and tells it each
request, check answer, event, leadership change, sample and reconcile. The
scenario engine passes its timeline's recorder
(:class:`etcdlab.common.timeline.Recorder` has these methods); a test may pass
anything that does. The plane never reads back what it reported.
"""

from __future__ import annotations

from typing import Protocol

from etcdlab.common.timeline import ErrorClass, EventKind


class PlaneListener(Protocol):
    def request(
        self,
        component: str,
        op: str,
        latency: float,
        error: ErrorClass | None = None,
        source: str = "etcd",
        member: str | None = None,
    ) -> None:
        """One request of ``component`` finished after ``latency`` seconds;
        ``source`` is ``etcd`` or ``cache``, ``member`` the member that served it."""

    def health(self, component: str, healthy: bool) -> None:
        """A check (livez or readyz) answered."""

    def event(self, component: str, kind: EventKind, detail: str = "") -> None:
        """Something of note happened to ``component``."""

    def leader(self, lease: str, candidate: str, leading: bool) -> None:
        """``candidate`` started or stopped believing it leads ``lease``."""

    def gauge(self, name: str, value: float) -> None:
        """A sampled value (queue depth, cache size, progress, loop lag)."""

    def reconcile(self, controller: str, key: str, duration: float, ops: int, ok: bool) -> None:
        """One reconcile of ``key`` took ``duration`` seconds and ``ops`` requests."""

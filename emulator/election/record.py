"""The leader election record, stored the way the apiserver stores a Lease.

The value is a ``coordination.k8s.io/v1`` Lease as JSON. Times in it are for
people reading the key: electors never judge expiry from them (the clocks that
wrote them may disagree), only from the moment they saw the record change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class LeaderElectionRecord:
    holder_identity: str
    lease_duration_seconds: float
    acquire_time: float
    """Wall-clock seconds since the epoch."""
    renew_time: float
    leader_transitions: int = 0

    def to_lease(self, name: str, namespace: str) -> bytes:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "holderIdentity": self.holder_identity,
                "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": _micro_time(self.acquire_time),
                "renewTime": _micro_time(self.renew_time),
                "leaseTransitions": self.leader_transitions,
            },
        }
        return json.dumps(lease, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_lease(cls, raw: bytes) -> LeaderElectionRecord:
        """Parse a stored Lease; ``ValueError`` says what is wrong with it."""
        try:
            spec = json.loads(raw)["spec"]
            return cls(
                holder_identity=str(spec["holderIdentity"]),
                lease_duration_seconds=float(spec["leaseDurationSeconds"]),
                acquire_time=_parse_micro_time(spec["acquireTime"]),
                renew_time=_parse_micro_time(spec["renewTime"]),
                leader_transitions=int(spec["leaseTransitions"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a Lease record: {error!r}") from error


def _micro_time(seconds: float) -> str:
    # metav1.MicroTime's wire form: RFC 3339 with microseconds, UTC.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()

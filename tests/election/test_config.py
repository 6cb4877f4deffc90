"""LeaderElectionConfig validation (client-go's order and rules) and the record format."""

from __future__ import annotations

import json

import pytest

from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.record import LeaderElectionRecord


def test_defaults_are_client_go_core_defaults() -> None:
    config = LeaderElectionConfig(identity="a")
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15, 10, 2)
    assert config.jitter_factor == 1.2
    # resourcelock: each request bounded by max(1 s, RenewDeadline / 2).
    assert config.request_timeout == 5.0
    assert (
        LeaderElectionConfig(identity="a", renew_deadline=1.5, retry_period=1).request_timeout == 1
    )
    assert config.key == b"/registry/leases/kube-system/etcdlab-controller"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lease_duration": 10.0}, "lease_duration must be greater than renew_deadline"),
        ({"retry_period": 10 / 1.2}, r"renew_deadline must be greater than retry_period \*"),
        ({"jitter_factor": 5.0}, r"renew_deadline must be greater than retry_period \*"),
        (
            {"lease_duration": -1.0, "renew_deadline": -2.0, "retry_period": -3.0},
            "lease_duration must be greater than zero",
        ),
        ({"retry_period": 0.0}, "retry_period must be greater than zero"),
        ({"jitter_factor": 0.0}, "jitter_factor must be greater than zero"),
        ({"identity": ""}, "identity must not be empty"),
        ({"name": "a/b"}, "name must be"),
        ({"namespace": ""}, "namespace must be"),
    ],
)
def test_validation_names_the_field(overrides: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"identity": "a", **overrides}
    with pytest.raises(ValueError, match=message):
        LeaderElectionConfig(**arguments)  # type: ignore[arg-type]


def test_scaled_shrinks_every_duration_and_keeps_the_rest() -> None:
    config = LeaderElectionConfig(identity="a", release_on_cancel=True).scaled(0.1)
    assert config.lease_duration == pytest.approx(1.5)
    assert config.renew_deadline == pytest.approx(1.0)
    assert config.retry_period == pytest.approx(0.2)
    # The 1 s floor scales too: max(0.1 s, 0.5 s).
    assert config.request_timeout == pytest.approx(0.5)
    assert config.scaled(0.1).request_timeout == pytest.approx(0.05)
    assert config.jitter_factor == 1.2 and config.release_on_cancel and config.identity == "a"
    with pytest.raises(ValueError, match="time_scale must be a positive finite number"):
        config.scaled(0)


def test_record_is_stored_as_a_coordination_lease() -> None:
    record = LeaderElectionRecord("node-1", 15, 1_700_000_000.25, 1_700_000_002.5, 3)
    raw = record.to_lease("kube-scheduler", "kube-system")
    lease = json.loads(raw)
    assert lease["kind"] == "Lease" and lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["metadata"] == {"name": "kube-scheduler", "namespace": "kube-system"}
    assert lease["spec"]["holderIdentity"] == "node-1"
    assert lease["spec"]["renewTime"] == "2023-11-14T22:13:22.500000Z"
    assert lease["spec"]["leaseTransitions"] == 3
    assert LeaderElectionRecord.from_lease(raw) == record


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"spec": {"holderIdentity": "x"}}'])
def test_malformed_record_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a Lease record"):
        LeaderElectionRecord.from_lease(raw)

"""HTTP/2 frame loss: which frames it drops, and what it refuses to be."""

from __future__ import annotations

import random

import pytest

from etcdlab.proxy.faults.base import Action
from etcdlab.proxy.faults.frames import FrameLoss


def test_frame_loss_filter() -> None:
    lease = FrameLoss(1.0, pings=False, messages=True, method="etcdserverpb.Lease")
    rng = random.Random(0)
    assert lease.on_data("/etcdserverpb.Lease/LeaseKeepAlive", True, rng) is Action.DROP
    assert lease.on_data("/etcdserverpb.KV/Range", True, rng) is Action.PASS
    assert lease.on_data(None, True, rng) is Action.PASS
    # Filtered faults never drop connection-level PINGs.
    assert FrameLoss(1.0, method="etcdserverpb.KV").on_ping(rng) is Action.PASS
    assert FrameLoss(1.0).on_ping(rng) is Action.DROP


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FrameLoss(0.1, pings=False), "at least one"),
        (lambda: FrameLoss(0.1, method="/x"), "method"),
        (lambda: FrameLoss(1.5), "probability"),
    ],
)
def test_validation_names_the_field(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]

"""Fault kinds, one per module; ``KINDS`` maps each kind name to its class."""

from proxy.faults.bandwidth import Bandwidth
from proxy.faults.base import BOTH, DOWNSTREAM, UPSTREAM, Fault, Shaper
from proxy.faults.blackhole import Blackhole
from proxy.faults.frames import FrameLoss
from proxy.faults.latency import Latency
from proxy.faults.loss import Loss
from proxy.faults.pause import Pause
from proxy.faults.reject import Reject
from proxy.faults.reset import Reset

KINDS: dict[str, type[Fault]] = {
    cls.kind: cls for cls in (Loss, FrameLoss, Latency, Bandwidth, Blackhole, Pause, Reject, Reset)
}

__all__ = [
    "BOTH",
    "DOWNSTREAM",
    "KINDS",
    "UPSTREAM",
    "Bandwidth",
    "Blackhole",
    "Fault",
    "FrameLoss",
    "Latency",
    "Loss",
    "Pause",
    "Reject",
    "Reset",
    "Shaper",
]

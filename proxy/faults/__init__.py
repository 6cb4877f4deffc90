"""Fault kinds, one per module; ``KINDS`` maps each kind name to its class."""

from etcdlab.proxy.faults.bandwidth import Bandwidth
from etcdlab.proxy.faults.base import BOTH, DOWNSTREAM, UPSTREAM, Fault, Shaper
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.frames import FrameLoss
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.faults.pause import Pause
from etcdlab.proxy.faults.reject import Reject
from etcdlab.proxy.faults.reset import Reset

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

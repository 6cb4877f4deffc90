"""Stop reading from the sender: its kernel buffers fill and TCP flow control stalls it.

Unlike a blackhole nothing is even read, so the sender sees a zero window.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Fault
from etcdlab.proxy.faults.registry import register


@register
@dataclass(frozen=True, eq=False)
class Pause(Fault):
    kind = "pause"
    stalls = True

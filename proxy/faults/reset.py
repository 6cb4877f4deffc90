"""Connections are reset (RST, SO_LINGER 0): every existing one when the fault is
added, and every new one as soon as it is accepted while the fault stays
(Toxiproxy's ``reset_peer`` with no timeout). It acts whatever its stream."""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Alias, Fault
from etcdlab.proxy.faults.registry import register


@register
@dataclass(frozen=True, eq=False)
class Reset(Fault):
    kind = "reset"
    aliases = (Alias("reset_peer", {"timeout": 0}),)
    refuses = True
    resets_open = True

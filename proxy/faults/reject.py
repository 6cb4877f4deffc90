"""New connections are refused (accepted, then reset at once); existing ones live on.

It acts on connections whatever its stream."""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Fault
from etcdlab.proxy.faults.registry import register


@register
@dataclass(frozen=True, eq=False)
class Reject(Fault):
    kind = "reject"
    refuses = True

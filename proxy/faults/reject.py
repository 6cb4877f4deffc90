"""New connections are refused (accepted, then reset at once); existing ones live on."""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Fault


@dataclass(frozen=True, eq=False)
class Reject(Fault):
    kind = "reject"

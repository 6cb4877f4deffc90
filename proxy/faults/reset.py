"""Connections are reset (RST, SO_LINGER 0): every existing one when the fault is
added, and every new one as soon as it is accepted while the fault stays."""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Fault


@dataclass(frozen=True, eq=False)
class Reset(Fault):
    kind = "reset"

"""Nothing passes; connections stay open (Toxiproxy's ``timeout`` with ``timeout: 0``).

The bytes are held, not discarded, as a partitioned kernel keeps them for
retransmission: when the blackhole is removed they are delivered (if the
endpoints have not given up on the connection by then). Reading from the
sender stops once the held bytes reach the link's buffer limit, so TCP flow
control pushes back on it like a real partition would.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Alias, Fault
from etcdlab.proxy.faults.registry import register


@register
@dataclass(frozen=True, eq=False)
class Blackhole(Fault):
    kind = "blackhole"
    aliases = (Alias("timeout", {"timeout": 0}),)
    holds = True

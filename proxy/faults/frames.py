"""HTTP/2-aware loss: drop only what can be dropped without breaking the connection.

- ``pings``: PING and PING-ACK frames (how keepalive failure happens). They
  belong to no stream, so a fault with a ``method`` filter never drops them.
- ``messages``: whole gRPC messages, only for DATA frames that start and end on
  a message boundary and do not end the stream; a WINDOW_UPDATE goes back to
  the sender in their place so flow control is not charged for them.
- ``streams``: a whole stream, ended with RST_STREAM (CANCEL) to the server and
  gRPC status UNAVAILABLE to the client.

HEADERS, CONTINUATION and SETTINGS are never dropped (HPACK state and
connection settings must stay in step on both ends).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from etcdlab.proxy.faults.base import Action, Flag, FrameFault, method, probability
from etcdlab.proxy.faults.registry import register
from etcdlab.proxy.methods import method_matches


@register
@dataclass(frozen=True, eq=False)
class FrameLoss(FrameFault):
    kind = "frames"
    flags = (
        Flag(
            "--loss",
            "probability",
            "drop each HTTP/2 PING frame with this probability",
            model="frames",
        ),
    )
    probability: float = probability()
    pings: bool = True
    messages: bool = False
    streams: bool = False
    method: str | None = method()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.pings or self.messages or self.streams):
            raise ValueError("at least one of pings, messages, streams must be true")

    def on_ping(self, rng: random.Random) -> Action:
        if self.pings and self.method is None and rng.random() < self.probability:
            return Action.DROP
        return Action.PASS

    def on_data(self, path: str | None, whole_messages: bool, rng: random.Random) -> Action:
        if not method_matches(self.method, path) or not (self.messages or self.streams):
            return Action.PASS
        if rng.random() >= self.probability:
            return Action.PASS
        if self.streams and (not self.messages or not whole_messages or rng.random() < 0.5):
            return Action.KILL_STREAM
        return Action.DROP if whole_messages else Action.PASS

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
from enum import Enum

from etcdlab.proxy.faults.base import Fault, check_method, check_probability, method_matches


class Action(Enum):
    PASS = "pass"
    DROP = "drop"
    KILL_STREAM = "kill_stream"


@dataclass(frozen=True, eq=False)
class FrameLoss(Fault):
    kind = "frames"
    probability: float
    pings: bool = True
    messages: bool = False
    streams: bool = False
    method: str | None = None  # "etcdserverpb.Lease/LeaseKeepAlive" or a service

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability("probability", self.probability)
        if not (self.pings or self.messages or self.streams):
            raise ValueError("at least one of pings, messages, streams must be true")
        check_method(self.method)

    def on_ping(self, rng: random.Random) -> Action:
        if self.pings and self.method is None and rng.random() < self.probability:
            return Action.DROP
        return Action.PASS

    def on_data(self, path: str | None, whole_messages: bool, rng: random.Random) -> Action:
        """Decide for one DATA frame of a stream calling ``path``."""
        if not method_matches(self.method, path) or not (self.messages or self.streams):
            return Action.PASS
        if rng.random() >= self.probability:
            return Action.PASS
        if self.streams and (not self.messages or not whole_messages or rng.random() < 0.5):
            return Action.KILL_STREAM
        return Action.DROP if whole_messages else Action.PASS

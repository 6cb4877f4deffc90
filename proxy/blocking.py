"""A sender blocked on its full send buffer, and the write deadline that ends it.

The loss model keeps the send buffer of the sender it stands for
(:mod:`etcdlab.proxy.faults.sndbuf`). While that buffer is full the pipe
stops reading from the sender: what the sender writes meanwhile waits in the
loopback hop to the proxy, as it would wait in a blocked application. The
reading resumes when the model's ACKs have freed the buffer down to where
Linux wakes a writer, or when the loss is removed.

The hop itself never blocks the sender within a fault's time (a loopback
socket takes hundreds of kilobytes before a write blocks), so an application
that bounds its writes never sees the deadline pass through the proxy. A
link's ``write_deadline`` stands in for the upstream server's (etcd's peer
listener gives every connection 5 s, rafthttp ``ConnWriteTimeout``): this is
the application's behaviour, played by the proxy. When the server's sender
stays blocked that long, its write fails: the server's side of the connection
is reset (its next write fails, as the timed-out one did, and what it wrote
since the block is lost with the connection) while the client gets what the
model still carries and then EOF, as from a Linux socket closed with data
queued.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from etcdlab.proxy.faults.base import DOWNSTREAM
from etcdlab.proxy.faults.loss import Loss, TcpState
from etcdlab.proxy.faults.sndbuf import frees_at, queued, wakes_at
from etcdlab.proxy.plan import Plan
from etcdlab.proxy.sockets import reset_transport

if TYPE_CHECKING:
    from etcdlab.proxy.pipe import Pipe

REASON = "send_buffer"  # the pipe's pause reason


def limited(plan: Plan) -> Loss | None:
    """The loss in ``plan`` that bounds its sender's send buffer, if any."""
    for shaper in plan.fifo:
        if isinstance(shaper, Loss) and shaper.send_buffer:
            return shaper
    return None


class Gate:
    """The blocking of one pipe's sender: its wake-up and its deadline."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.wake: asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def written(self, loss: Loss) -> None:
        """The sender's latest write is shaped: block it if its buffer is full."""
        state = self.pipe.fault_state.get(loss)
        if not isinstance(state, TcpState) or self.wake is not None:
            return
        now = asyncio.get_running_loop().time()
        if queued(state, now) < loss.send_buffer:
            return
        pipe = self.pipe
        pipe.pause(REASON)
        pipe.link.counters.applied(loss, "write_blocked")
        self._arm(loss, state, now)
        deadline = pipe.link.write_deadline
        if deadline is not None and pipe.direction == DOWNSTREAM and self.deadline is None:
            self.deadline = asyncio.get_running_loop().call_later(deadline, self._expire, loss)

    def _arm(self, loss: Loss, state: TcpState, now: float) -> None:
        at = frees_at(state, now, wakes_at(loss.send_buffer))
        self.wake = asyncio.get_running_loop().call_at(at, self._check, loss)

    def _check(self, loss: Loss) -> None:
        self.wake = None
        state = self.pipe.fault_state.get(loss)
        now = asyncio.get_running_loop().time()
        if isinstance(state, TcpState) and queued(state, now) > wakes_at(loss.send_buffer):
            # An ACK the model moved later: wait for it.
            self._arm(loss, state, now)
            return
        self.open()

    def open(self) -> None:
        """The sender may write again (its buffer freed, or the loss removed)."""
        self.stop()
        self.pipe.resume(REASON)

    def _expire(self, loss: Loss) -> None:
        self.deadline = None
        pipe = self.pipe
        if REASON not in pipe.pause_reasons or pipe.closed or pipe.source is None:
            return
        pipe.link.counters.applied(loss, "write_timeout")
        self.stop()
        # The blocked write's bytes, and those after it, go with the connection.
        pipe.stalled.clear()
        # The reset reaches Connection.lost, which hands the client the rest, then EOF.
        reset_transport(pipe.source)

    def stop(self) -> None:
        for timer in (self.wake, self.deadline):
            if timer is not None:
                timer.cancel()
        self.wake = self.deadline = None

"""The loss model's sender's socket send buffer, charged as Linux charges it.

A write blocks when its socket's send buffer is full, and under loss that is
what ends an application's stalled connection if it bounds its writes, as
etcd's peer listener does (5 s). The proxy splits the connection: the sender
writes to a clean loopback hop that takes hundreds of kilobytes before a
write blocks, so the loss model keeps the send buffer of the sender it stands
for (``Loss.send_buffer``) and the pipe stops reading from the sender while
that is full (:mod:`etcdlab.proxy.blocking`).

Linux's rules (``tcp_sendmsg_locked``, ``sk_stream_memory_free``,
``sk_stream_write_space``, ``tcp_sndbuf_expand``, ``tcp_clean_rtx_queue``),
and what ``ss -tmi`` showed of them (MTU 1500, Linux 6.18; docs/BENCHMARKS.md,
"Scenario fidelity": a kernel-network scenario run at 30% loss, and a probe
stream of 70-byte writes at 10/s under the same loss):

- The buffer's size (``tb``) is set when the connection opens, for twice an
  initial window of ten segments of MSS 1448, and grows only while the sender
  fills its congestion window: 46,080 B on every raft stream and every stream
  writer of the scenario run (some client connections had grown to 55-88 KB).
- Each buffer (skb) is charged its bytes plus 832 B (the probe's ``w`` minus
  Send-Q was exactly 832 B per skb all through its run). A write sent at once
  is an skb per segment; a write the congestion window holds back joins the
  unsent skb at the tail while that has room (the model's joined writes, which
  take no segment of their own). Deep in a stall that is 1.6 B charged per
  byte queued, in the probe and on etcd's streams alike.
- Bytes are uncharged when the cumulative ACK passes them; SACKed bytes stay
  charged until then.
- A write blocks while the charge is at least the buffer's size (etcd's
  stalled streams: ``w`` 46-48 KB at a Send-Q of 29-30 KB), and the writer
  is woken once the free space is at least half the charge, that is at two
  thirds of the size.
"""

from __future__ import annotations

from etcdlab.proxy.faults.loss import TcpState, Unacked

# What Linux charges an skb beyond its bytes (measured, above).
SKB_OVERHEAD = 832
# The send buffer of a connection at MSS 1448 that never filled its window (measured, above).
LINUX_SEND_BUFFER = 46_080


def charge(write: Unacked) -> int:
    """What ``write`` holds of its sender's send buffer until it is acked."""
    return write.size + SKB_OVERHEAD * write.segments


def queued(state: TcpState, now: float) -> int:
    """The charge of the sender's writes at ``now``; those the cumulative ACK has
    passed by then (a write and every write before it acked) are freed for good."""
    buffered = state.buffered
    while buffered and buffered[0].ack_at <= now:
        buffered.popleft()
    return sum(charge(write) for write in buffered)


def wakes_at(size: int) -> int:
    """The charge at or below which a writer blocked on a buffer of ``size`` wakes."""
    return size * 2 // 3


def frees_at(state: TcpState, now: float, charged: int) -> float:
    """When, as the ACKs stand at ``now``, the charge falls to ``charged`` or below
    (``now`` if it already has); ACKs the model moves later may postpone it."""
    left = queued(state, now)
    latest = now
    for write in state.buffered:
        if left <= charged:
            break
        latest = max(latest, write.ack_at)
        left -= charge(write)
    return latest

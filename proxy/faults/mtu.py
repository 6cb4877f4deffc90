"""An MTU black hole: a path that drops every IP packet above ``mtu`` bytes.

What a broken path MTU does to TCP (a hop with a smaller MTU that drops big
packets without the ICMP "fragmentation needed" that path MTU discovery
waits for, as a faulty line card or an overlay does): the sender keeps its
MSS, so every segment above the size is lost on its first send and on every
retransmission, for as long as the path stays broken; segments below it
pass. Linux's ``tcp_mtu_probing`` is off by default, so nothing shrinks them.

Sizes: a segment's size on the path is its IP packet, the TCP payload plus
``headers`` bytes (IPv4 20, TCP 20 and the timestamp option 12: 52, which a
1500-byte Ethernet MTU turns into Linux's MSS of 1448). A segment whose
payload exceeds ``mtu - headers`` is dropped. As in
:mod:`etcdlab.proxy.faults.loss`, each chunk the proxy reads stands for one
write by the sender, cut into ``mss``-sized segments: a write of 2000 bytes
is a 1448-byte and a 552-byte segment, so with ``mtu = 1000`` its first
segment never arrives and a 600-byte write passes whole.

A dropped segment is held (never delivered while the rule stands), and so is
everything behind it on that direction of the connection (the link keeps
bytes in order: head-of-line blocking), whatever its size: a connection that
once wrote a big segment stalls until the rule goes or an endpoint gives up
on it (gRPC keepalive, a request deadline). Later traffic does not help: a
SACK reveals the hole, but the fast retransmission is as big as the hole.
When the rule is removed, the held segment arrives with the sender's next
retransmission from then on: the timeout doubles from ``min_rto`` (plus the
round trip) up to ``max_rto``, so after a minute of black hole the data may
wait tens of seconds more, as a kernel's would. The kernel would abort the
connection after ``tcp_retries2`` (about 15 minutes of retries); the link
does not, so whoever holds the connection must time it out.

SYNs, ACKs and PINGs are small: connections open, and keepalive pings pass
until they queue behind a held segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdlab.proxy.faults.base import Flag, Late, Piece, ShapeContext, Shaper, duration
from etcdlab.proxy.faults.registry import register

# How far ahead (seconds) a held segment's release lies while the rule stands:
# never, as far as any run goes, yet a finite time every event loop can schedule.
NEVER = 1e9


@dataclass(frozen=True, eq=False)
class Held:
    """A segment above the MTU, first sent at ``sent_at`` (loop time), held
    until the rule is removed."""

    fault: MtuBlackhole
    sent_at: float

    def revealed(self, release: float, arrival: float) -> tuple[float, Late]:
        # The fast retransmission the SACK triggers is as big as the hole.
        return release, self

    def rearmed(self, release: float, acked_at: float) -> tuple[float, Late]:
        return release, self

    def healed(self, at: float) -> float:
        return self.fault.next_send(self.sent_at, at)


@register
@dataclass(frozen=True, eq=False)
class MtuBlackhole(Shaper):
    kind = "mtu"
    flags = (
        Flag(
            "--mtu",
            "mtu",
            "drop every IP packet above this many bytes, both ways, on every "
            "retransmission (a path MTU black hole), e.g. 1000",
        ),
    )
    mtu: int = 1000
    headers: int = 52
    mss: int = 1448
    rtt: float = duration(0.0)
    min_rto: float = duration(0.2)
    max_rto: float = duration(120.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.headers < 0:
            raise ValueError("headers must be 0 or more bytes")
        if self.mtu <= self.headers:
            raise ValueError(f"mtu must exceed headers ({self.headers} bytes): nothing would pass")
        if self.mss < 1:
            raise ValueError("mss must be at least 1 byte")
        if self.max_rto < self.min_rto:
            raise ValueError("max_rto must be at least min_rto")

    @property
    def largest_payload(self) -> int:
        """The largest TCP payload of a segment that passes (bytes)."""
        return self.mtu - self.headers

    def next_send(self, sent_at: float, at: float) -> float:
        """The first retransmission at or after ``at`` of a segment first sent at
        ``sent_at``: the timeout ``min_rto`` plus the round trip, doubling up to
        ``max_rto``; plus the trip to the receiver."""
        rto = self.rtt + self.min_rto
        send = sent_at + rto
        while send < at:
            rto = min(rto * 2, self.max_rto)
            send += rto
        return send + self.rtt / 2

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        # Known to the pipe, so that removing the rule heals what it holds.
        ctx.state.setdefault(self, None)
        largest = self.largest_payload
        if largest >= self.mss:
            return pieces
        out: list[Piece] = []
        for piece in pieces:
            clean = 0  # bytes of passing segments not yet emitted
            for offset in range(0, piece.size, self.mss):
                segment = min(self.mss, piece.size - offset)
                if segment <= largest:
                    clean += segment
                    continue
                ctx.count(self, "segment_dropped")
                if clean:
                    out.append(Piece(clean, piece.release, piece.late))
                    clean = 0
                held = Held(self, piece.release)
                out.append(Piece(segment, piece.release + NEVER, held))
            if clean:
                out.append(Piece(clean, piece.release, piece.late))
        return out

"""TCP-faithful packet loss: bytes are never lost, they arrive late.

What Linux does with a lost segment, reduced to its timing:

- If nothing else is sent behind it, timers recover it: the tail loss probe
  sends it again; if that is lost, the retransmission timeout (``min_rto``
  plus the round trip) fires, doubling each time the retransmission is lost
  again (a lost SYN has no probe: 1 s, then 2 s more, ...). The probe waits
  two round trips plus ``min_rto`` when the lost segment is the only one in
  flight (its ACK may be delayed), but two round trips plus 2 ms when other
  data is still unacknowledged, unless that data's ACK arrives first, which
  re-arms it as for one segment (``tcp_schedule_loss_probe``).
- If another segment follows (in the same write, or a later one before the
  timer fires), the receiver's SACK of it reveals the hole and RACK marks it
  lost: at once if the later segment was sent more than a quarter of a round
  trip after it, otherwise when the reorder timer fires (``recovery``, one
  jiffy). A lost fast retransmission falls back to the timer.
- Everything sent behind a lost segment waits for it (head-of-line blocking;
  the link never releases bytes before earlier ones).
- The timers follow the sender's view of its connection (:class:`TcpState`,
  one per direction of a connection): its smoothed round trip, the RTO
  backoff, and its writes whose ACK is not back yet (:class:`Unacked`). The
  receiver acks a lone small write late (``delayed_ack``) unless more data
  or its own reply comes first; it acks a second small write, a full
  segment, or data around a hole at once. An ACK is lost as often as data
  (``ack_loss``); the data each way carries the ACK of the other way's.
  Every ACK gives a round-trip sample (timestamps) and ends the backoff, the
  SACK of a write beyond a hole too; each timeout enters the backoff when it
  fires.
  Linux also adds the round trip's deviation to the RTO; the model does only
  with ``rto_deviation`` (off: on a one-way stream the long samples of lost
  ACKs feed it, unless ``probe_samples`` takes the probe's ACK as Linux does).
  A lost ACK is drawn again by the sender's probe; that retransmission and
  its duplicate ACK are lost as often as any, and the timers go on (RTO
  doubling) until a pair gets through (``ack_timers``): what makes a one-way
  stream at 30% both ways stall for seconds in Linux. Removing the loss cuts
  such a chain at its next send (:meth:`Held.healed`). With
  ``cumulative_acks`` (off by default) such a chain also ends at any ACK
  that left the receiver after the write had reached it in order: Linux
  puts its current cumulative ACK on every segment it sends, so the ACK of
  a hole's repair acks what arrived beyond it, data the other way that is
  sent again carries the ACK of what arrived meanwhile, and an ACK already
  on its way acks a write whose arrival a later SACK moved before it
  (:class:`Ack`, :meth:`TcpState.carry`).
  Which ACK a sample comes from follows Linux with two more options:
  ``sample_per_ack`` (one sample per ACK, from the oldest write it newly
  acks, Karn's rule, then SACK, then the echoed timestamp) and
  ``ack_with_data`` (an ACK held back goes with the receiver's next data and
  shares its fate). ``sack_loss`` (on by default): the SACK that reveals a hole is an ACK
  too, lost as often; the sender then learns of the hole from the duplicate
  its probe (the fast one: two segments are out) draws, or from the hole's
  own timers.
- The sender's congestion window (CUBIC's rules, Linux's default) limits the
  segments in flight: it starts at ten, a loss found by a retransmission
  other than a timeout (fast retransmission or probe) cuts it to 0.7 of
  itself (never below two), a retransmission timeout to one; it grows by one
  per acknowledged segment below the slow-start threshold, and by one per
  window above it, while the sender fills it. A write that finds the window
  full waits for the ACK that opens it, and what is written while it waits
  joins its segment while that has room (one fate for both). Under loss the
  window stays at one or two segments, so later writes queue behind a lost
  one instead of revealing it. The time a write held back goes is drawn
  when it is written, from the ACKs known then; with
  ``window_follows_acks`` (off by default) an ACK that comes sooner after
  all (on the other way's data, written later) opens the window then, and
  the held bytes, their resends and what queued behind them go sooner
  (:meth:`TcpState.reopen`, :meth:`Held.sooner`).

The ACKs are part of the model only when the loss runs both ways and for
every stream: otherwise they cross a clean path and come back at once.

How many times each transmission is lost is drawn when the segment is sent,
as if the loss lasted; each lost segment also carries when it is sent again
(:class:`Resend`), so when the fault is removed the first of those sends
from then on gets through, as it would once the network is clean; a SYN
still being retried too. Bytes the congestion window holds back carry the
writes whose ACKs they wait for (:class:`Held`): once the fault is removed
they go when the next send of those writes' timers gets through.

Each chunk the proxy reads stands for one write by the sender and is cut into
``mss``-sized segments, each transmission rolled against ``probability``.
With ``control_writes`` (HTTP/2 links; off by default) a chunk is cut where
connection frames (stream 0: PING and its ACK, WINDOW_UPDATE, SETTINGS) meet
a stream's frames, and each part is a write of its own: a gRPC transport
writes the frames it makes in answer to what it read (etcd's BDP PING and
WINDOW_UPDATE when a request's DATA arrives, the client's PING ACK) when its
writer next runs, and a message when the application makes it, and with
TCP_NODELAY each write leaves as its own segment unless the congestion
window holds the first back (then the second joins it, :meth:`write`). The
proxy reads the two as one chunk whenever it reads later than the second
came. The later write's SACK reveals a lost tail of the earlier one, as a
later chunk's does.
A scaled run's loss is :meth:`Fault.scaled`: every duration here, and so
every timer and every round trip learnt, shrinks by the same factor.

With ``method`` (HTTP/2 links) only segments that carry bytes of streams
calling that gRPC method or service can be lost; everything behind a late
segment still waits for it, whatever its stream, as TCP makes it. SYNs carry
no stream, so a filtered loss never delays the connect.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

from etcdlab.proxy.faults.base import (
    BOTH,
    Flag,
    Late,
    Piece,
    ShapeContext,
    Shaper,
    duration,
    method,
    probability,
    reveal,
)
from etcdlab.proxy.faults.registry import register

# Kinds of event a sender settles, in this order when simultaneous.
TIMEOUT, DETECTED, SAMPLE = 0, 1, 2
CUBIC_BETA = 0.7  # CUBIC's multiplicative decrease (Linux's beta 717/1024)
# Names each ACK, so the writes one ACK covers can be told apart from those of
# another arriving at the same loop time (uvloop's clock ticks in milliseconds).
ACK_IDS = itertools.count()


@dataclass(eq=False)
class Ack:
    """An ACK that reaches the sender (``Loss.cumulative_acks``): when it left the
    receiver and when it arrives (loop times). Linux puts the receiver's
    cumulative ACK on every segment it sends, alone, on its data or answering
    a retransmission, so it acks every write that had reached the receiver in
    order when it left."""

    left: float
    at: float
    id: int = field(default_factory=ACK_IDS.__next__)


@dataclass(eq=False)
class Unacked:
    """A write whose ACK has not reached its sender (loop times): when it was
    sent, when its last byte reaches the receiver, when everything up to it
    has, and when the ACK comes back."""

    sent: float
    arrived: float
    delivered: float
    ack_at: float
    repaired: bool  # some segment of it was lost and sent again
    # When the retransmission timer fires for its lost last segment (each
    # firing one more timeout in the sender's backoff, from then on).
    timeouts: list[float] = field(default_factory=list)
    sampled: bool = False  # its SACK gave a sample before the cumulative ACK came
    segments: int = 1  # how many segments it takes in the congestion window
    in_flight: int = 1  # segments in flight, its own included, when it was sent
    # When its sender learns of a loss among its segments by a retransmission
    # other than a timeout (a fast retransmission or the probe), which cuts the
    # congestion window; None once counted or if none was lost.
    detected: float | None = None
    # When the sender's probe drew the duplicate ACK of it, its own ACK lost.
    probed: float | None = None
    # The ACK that brings it back (see ACK_IDS).
    ack_id: int = field(default_factory=ACK_IDS.__next__)
    # While the receiver holds its ACK back (a lone small write), when the
    # delayed-ACK timer would send it alone (loop time); None once sent.
    ack_due: float | None = None
    # What the congestion window held it back for, if it waited to be sent.
    held: Held | None = None
    size: int = 0  # its bytes (etcdlab.proxy.faults.sndbuf charges them)
    # Its own (S)ACK, or the duplicate its timers drew, with cumulative_acks.
    own: Ack | None = None

    def shift(self, by: float) -> None:
        """It was sent ``by`` seconds sooner than drawn, and everything that
        followed from its send moves with it (its ``delivered`` is the sender's)."""
        self.sent += by
        self.arrived += by
        self.ack_at += by
        self.timeouts = [fires + by for fires in self.timeouts]
        if self.detected is not None:
            self.detected += by
        if self.probed is not None:
            self.probed += by
        if self.own is not None:
            self.own.left += by
            self.own.at += by

    @property
    def sample_from(self) -> float:
        """Where the round-trip sample of its ACK starts: its send time, or the
        arrival of its retransmission, whose timestamp the ACK echoes (Linux
        takes no sample from the send time of retransmitted data); the
        sender's probe is such a retransmission when its ACK was lost and no
        later ACK came first (``probed``)."""
        if self.probed is not None and self.ack_at >= self.probed:
            return self.probed
        return self.arrived if self.repaired else self.sent


@dataclass
class TcpState:
    """What one sending TCP has learnt about its connection: its smoothed round
    trip and how many retransmission timeouts fired since the last round-trip
    sample, and its writes not acknowledged yet."""

    srtt: float
    backoff: int = 0
    # The RTO's variance term (Linux's rttvar_us, before its min_rto floor)
    # and the deviation that feeds it (mdev_us): see sample().
    rttvar: float = 0.0
    mdev: float = 0.0
    unacked: list[Unacked] = field(default_factory=list)
    # When the writes acknowledged so far had all reached the receiver (loop time).
    acked_through: float = 0.0
    # Until when the receiver holds back the ACK of one small write (loop time).
    ack_owed_until: float = 0.0
    # The congestion window and slow-start threshold, in segments (Linux: the
    # initial window of ten, no threshold until the first loss).
    cwnd: float = 10.0
    ssthresh: float = math.inf
    # When the window was last cut: a loss among writes sent before then is
    # part of the same episode and cuts it no further (Linux's high_seq).
    cut_at: float = -math.inf
    # The segment held back by the window, waiting to go: when it goes, its
    # bytes, and the piece standing for it.
    queued: tuple[float, int, Piece] | None = None
    # One round-trip sample per ACK, as Linux takes it (Loss.sample_per_ack),
    # instead of one per write.
    per_ack: bool = False
    # When the sender hears of the latest write if it lay beyond a hole and
    # its SACK was lost: the duplicate its probe draws (Loss.sack_loss).
    sack_heard: float | None = None
    # With Loss.cumulative_acks, the ACKs that may still ack a write not acked
    # yet: those that left the receiver after everything acked had reached it.
    acks: list[Ack] = field(default_factory=list)
    # The writes its socket's send buffer holds, oldest first: kept apart from
    # ``unacked``, which the model settles ahead to when a held write goes
    # (etcdlab.proxy.faults.sndbuf; only with Loss.send_buffer).
    buffered: deque[Unacked] = field(default_factory=deque)

    def sample(self, rtt: float) -> None:
        """A round-trip sample, as Linux's ``tcp_rtt_estimator`` takes it:
        ``srtt`` moves 1/8 of the way, the deviation (``mdev``, four times the
        mean) 1/4 (1/32 when the round trip falls), ``rttvar`` jumps up with
        it and decays by a quarter of the excess per sample; a valid sample
        ends the backoff (RFC 6298)."""
        error = rtt - self.srtt
        self.srtt += error / 8
        change = abs(error) - self.mdev / 4
        if error < 0 and change > 0:
            change /= 8
        self.mdev += change
        self.rttvar = max(self.rttvar, self.mdev)
        self.rttvar -= (self.rttvar - self.mdev) / 4
        self.backoff = 0

    @property
    def delivered_at(self) -> float:
        """When everything written so far has reached the receiver (loop time)."""
        return self.unacked[-1].delivered if self.unacked else self.acked_through

    def settle(self, now: float) -> None:
        """Take, in time order, what has happened by ``now``: the round-trip
        samples of the ACKs that have arrived, each ending the backoff, and
        the retransmission timeouts that have fired, each adding one to it.

        A write beyond a hole is SACKed while the hole holds the cumulative
        ACK back; that ACK is a sample too (Linux's ``sack_rtt``). A timeout
        counts from when it fires, not from when the loss that will cause it
        is drawn. Without these two, a one-way stream under loss (raft's
        heartbeats) got no sample while any earlier write was late and
        charged each loss's future timeouts at once, so the backoff piled up
        to ``max_rto`` and held the stream for minutes."""
        # (when, TIMEOUT, DETECTED or SAMPLE, the write)
        events: list[tuple[float, int, Unacked]] = []
        acked: list[Unacked] = []  # cumulatively, not SACKed before
        while self.unacked and self.unacked[0].ack_at <= now:
            write = self.unacked.pop(0)
            self.acked_through = write.delivered
            events.extend((at, TIMEOUT, write) for at in write.timeouts)
            if write.detected is not None:
                events.append((write.detected, DETECTED, write))
            if not write.sampled:
                acked.append(write)
                events.append((write.ack_at, SAMPLE, write))
        if self.acks:
            # The rest ack only what had reached the receiver by then.
            self.acks = [ack for ack in self.acks if ack.left >= self.acked_through]
        sacked: list[Unacked] = []
        for write in self.unacked:
            if write.timeouts and write.timeouts[0] <= now:
                events.extend((at, TIMEOUT, write) for at in write.timeouts if at <= now)
                write.timeouts = [at for at in write.timeouts if at > now]
            if write.detected is not None and write.detected <= now:
                events.append((write.detected, DETECTED, write))
                write.detected = None
            if not write.sampled and write.ack_at <= now:
                write.sampled = True
                sacked.append(write)
                events.append((write.ack_at, SAMPLE, write))
        if self.per_ack:
            samples = ack_samples(acked, sacked)
        else:
            samples = {write: write.ack_at - write.sample_from for write in acked + sacked}
        events.sort(key=lambda event: event[:2])
        for at, kind, write in events:
            if kind == TIMEOUT:
                self.backoff += 1
                self.cut(at, write, timeout=True)
            elif kind == DETECTED:
                self.cut(at, write, timeout=False)
            else:
                rtt = samples.get(write)
                if rtt is not None:
                    self.sample(rtt)
                self.grow(write)

    def cut(self, at: float, write: Unacked, *, timeout: bool) -> None:
        """A loss among ``write``'s segments is found at ``at``: CUBIC's
        multiplicative decrease (the threshold to 0.7 of the window, at least
        two), once per episode; a retransmission timeout always leaves a
        window of one (Linux's ``tcp_enter_loss``), a fast retransmission or a
        probe the threshold (PRR ends its recovery there). A write sent at the
        very instant of the cut went after it (the sender settles first)."""
        if write.sent >= self.cut_at:
            self.ssthresh = max(self.cwnd * CUBIC_BETA, 2.0)
            self.cut_at = at
        self.cwnd = 1.0 if timeout else min(self.cwnd, self.ssthresh)

    def grow(self, write: Unacked) -> None:
        """The ACK of ``write`` grows the window if the sender was using it
        (Linux's ``tcp_is_cwnd_limited``): in slow start by its segments while
        at least half the window was in flight, above the threshold by one
        segment per window's worth acked while all of it was."""
        if self.cwnd < self.ssthresh:
            if 2 * write.in_flight > self.cwnd:
                self.cwnd = min(self.cwnd + write.segments, max(self.ssthresh, self.cwnd))
        elif write.in_flight >= self.cwnd:
            self.cwnd += write.segments / self.cwnd

    def in_flight(self, now: float) -> int:
        """Segments sent and not yet (S)ACKed at ``now``."""
        return sum(write.segments for write in self.unacked if write.ack_at > now)

    def window_opens(self, now: float) -> float:
        """When a write made at ``now`` can be sent: after data already waiting
        for the window, and once fewer segments than the window are in flight
        (call :meth:`settle` first)."""
        start = now
        if self.queued is not None:
            if self.queued[0] > now:
                start = self.queued[0]
            else:
                self.queued = None
        room = max(int(self.cwnd), 1)
        acks = sorted((w.ack_at, w.segments) for w in self.unacked if w.ack_at > start)
        excess = sum(segments for _, segments in acks) - room + 1
        for at, segments in acks:
            if excess <= 0:
                break
            excess -= segments
            start = at
        return start

    def awaited(self, now: float, opens: float) -> tuple[Unacked, ...]:
        """The writes whose ACKs, still to come at ``now``, open the window at
        ``opens`` (:meth:`window_opens`)."""
        return tuple(write for write in self.unacked if now < write.ack_at <= opens)

    def acked_by(self, at: float, sent: float, ack_id: int | None = None) -> None:
        """An ACK arriving at ``at`` covers every write that had reached the
        receiver, in order, by ``sent``, when it was sent (ACKs are cumulative);
        no ACK the receiver held back for them is still to go."""
        ack_id = next(ACK_IDS) if ack_id is None else ack_id
        for write in self.unacked:
            if write.delivered <= sent:
                acked(write, at, ack_id)

    def carry(self, ack: Ack, now: float = -math.inf) -> None:
        """``ack`` reaches the sender (``Loss.cumulative_acks``): it acks what had
        reached the receiver in order when it left, and stays on record for a
        write whose arrival a reveal later moves before that (:meth:`moved`).
        ``now``: no write sent from then on, nor moved, reaches the receiver
        earlier, so an ACK that left before it and before every write still
        waiting for its ACK goes off the record (a direction that sends
        nothing while the other's data carries its ACKs, a watch's, keeps one)."""
        floor = min(now, next((w.delivered for w in self.unacked if w.ack_at > now), now))
        self.acks = [kept for kept in self.acks if kept.left >= floor]
        self.acks.append(ack)
        self.acked_by(ack.at, ack.left, ack.id)

    def covered(self, write: Unacked) -> None:
        """The ACKs on record that left the receiver once ``write`` had reached it
        in order ack it too, if they come before its own: the ACK of a hole's
        repair acks what arrived beyond it, its SACK lost or not."""
        for ack in self.acks:
            if ack.left >= write.delivered:
                acked(write, ack.at, ack.id)

    def reopen(self, at: float, left: float, ack_id: int) -> None:
        """An ACK arriving at ``at`` that acks every write some held bytes await
        (they had reached the receiver by ``left``, when it left) opens the window
        for them then, if sooner than drawn when they were held
        (``Loss.window_follows_acks``): they go then, and so does everything
        drawn from their send. The sender's view jumped ahead to their send when
        they were held (:meth:`settle`), so an awaited write may be acked in
        that view already; its ACK is what it awaits, and moves here."""
        shifted = False
        for write in self.unacked:
            held = write.held
            if held is None or not held.awaits or write.sent <= at:
                continue
            for awaited in held.awaits:
                if awaited.delivered <= left:
                    acked(awaited, at, ack_id)
            shift = max(awaited.ack_at for awaited in held.awaits) - write.sent
            if shift < 0:
                if self.queued is not None and self.queued[0] == write.sent:
                    self.queued = (write.sent + shift, *self.queued[1:])
                write.shift(shift)
                shifted = True
        if shifted:
            delivered = self.acked_through
            for write in self.unacked:
                delivered = write.delivered = max(delivered, write.arrived)

    def moved(self, write: Unacked, arrived: float) -> None:
        """The last segment of ``write`` arrives at ``arrived`` after all (a later
        segment's SACK revealed it, or its probe was re-armed): its ACK moves
        with it, and the writes behind it wait for it. With ACKs on record
        (``Loss.cumulative_acks``), those that left once a write had now reached
        the receiver ack it, and its own moved ACK acks what it now covers."""
        if write not in self.unacked:
            return
        shift = arrived - write.arrived
        write.ack_at = max(write.ack_at + shift, arrived)
        write.ack_id = next(ACK_IDS)
        own = write.own
        if own is not None:
            own.left, own.at = max(own.left + shift, arrived), max(own.at + shift, arrived)
            own.id, write.ack_at = write.ack_id, own.at
        write.arrived = arrived
        # A timer that would have fired after the segment got through does not.
        write.timeouts = [at for at in write.timeouts if at <= arrived]
        index = self.unacked.index(write)
        delivered = self.unacked[index - 1].delivered if index else self.acked_through
        for later in self.unacked[index:]:
            delivered = later.delivered = max(delivered, later.arrived)
        if own is not None:
            self.acked_by(own.at, own.left, own.id)
            for later in self.unacked[index:]:
                self.covered(later)


def acked(write: Unacked, at: float, ack_id: int) -> None:
    """An ACK arriving at ``at`` acks ``write``: no ACK the receiver held back for
    it is still to go, and if it comes first, no timer of the write fires after it."""
    write.ack_due = None
    if write.ack_at > at:
        write.ack_at, write.ack_id = at, ack_id
        write.timeouts = [fires for fires in write.timeouts if fires <= at]


def ack_samples(acked: list[Unacked], sacked: list[Unacked]) -> dict[Unacked, float]:
    """The round-trip sample of each ACK among those that newly ``acked``
    (cumulatively, in send order) and ``sacked`` writes, keyed by one write it
    covers, as Linux takes it (``tcp_clean_rtx_queue``, ``tcp_ack_update_rtt``):
    from the send of the oldest write it newly acks, unless it also acks a
    retransmitted one (Karn); then from the oldest write it newly SACKs that
    was sent once; else from the timestamp it echoes, that of the transmission
    which brought the oldest write it acks (the receiver echoes the first
    segment after its last ACK). So a cumulative ACK of several writes is one
    sample, the longest, where a sample per write adds the shorter ones too."""
    groups: dict[int, list[Unacked]] = {}
    for write in acked + sacked:
        groups.setdefault(write.ack_id, []).append(write)
    cumulatively = set(acked)
    samples: dict[Unacked, float] = {}
    for group in groups.values():
        at = group[0].ack_at
        cumulative = [write for write in group if write in cumulatively]
        karn = any(write.sample_from != write.sent for write in cumulative)
        sacked_once = [w.sent for w in group if w not in cumulatively and w.sample_from == w.sent]
        if cumulative and not karn:
            samples[group[0]] = at - cumulative[0].sent
        elif sacked_once:
            samples[group[0]] = at - min(sacked_once)
        elif cumulative:
            samples[group[0]] = at - cumulative[0].sample_from
    return samples


@dataclass(frozen=True, eq=False)
class Resend:
    """When a lost segment is sent again (loop time): first at ``first``, then
    each retransmission timeout later, ``rto`` doubling up to the fault's
    ``max_rto``; the last of the ``count`` sends gets through. Each time is
    when that send would reach the receiver."""

    fault: Loss
    first: float
    count: int
    rto: float

    @property
    def sends(self) -> list[float]:
        backoff = self.fault.backoff
        return [self.first + backoff(n, self.rto) for n in range(self.count)]

    @property
    def arrival(self) -> float:
        return self.first + self.fault.backoff(self.count - 1, self.rto)

    def healed(self, at: float) -> float:
        """When the segment arrives if the loss ends at ``at``: the first send
        from then on gets through (no later than it would have anyway)."""
        return next((send for send in self.sends if send >= at), self.arrival)


@dataclass(frozen=True)
class Recovery:
    """A lost segment, sent at ``sent_at``, whose transmissions were lost ``losses`` times;
    ``rto`` is the sender's retransmission timeout when it was lost, ``resend``
    when it is sent again.

    ``fast_probe_at`` (loop time) is set when its tail loss probe is the fast
    one, which other data in flight allows: an ACK of that data arriving
    earlier re-arms the probe as for a lone segment, ``slow_probe``.
    ``sacked``: a segment of the same write follows it, whose SACK already
    revealed it; later traffic changes nothing."""

    fault: Loss
    sent_at: float
    losses: int
    rto: float
    resend: Resend
    fast_probe_at: float | None = None
    slow_probe: float = 0.0
    sacked: bool = False
    # The write it ends and its sender, whose view of it follows it when it moves.
    write: Unacked | None = None
    sender: TcpState | None = None
    # The congestion window held the segment back until ``sent_at``.
    held: Held | None = None

    def revealed(self, release: float, arrival: float) -> tuple[float, Late]:
        if self.sacked:
            return release, self
        resend = self.fault.revealed(self, release, arrival)
        if resend is None:
            return release, self
        return resend.arrival, dataclasses.replace(self, resend=resend)

    def rearmed(self, release: float, acked_at: float) -> tuple[float, Late]:
        held = self.held
        shift = 0.0 if held is None else held.sooner()
        if held is not None and shift < 0:
            # The window held it back, and opened sooner: all its sends go sooner.
            probe = None if self.fast_probe_at is None else self.fast_probe_at + shift
            sooner = dataclasses.replace(
                self,
                sent_at=self.sent_at + shift,
                resend=dataclasses.replace(self.resend, first=self.resend.first + shift),
                fast_probe_at=probe,
                held=dataclasses.replace(held, at=held.at + shift),
            )
            return sooner.rearmed(release + shift, acked_at)
        if self.fast_probe_at is None:
            return release, self
        resend = self.fault.rearmed(self, release, acked_at)
        if resend is None:
            return release, dataclasses.replace(self, fast_probe_at=None)
        return resend.arrival, dataclasses.replace(self, fast_probe_at=None, resend=resend)

    def healed(self, at: float) -> float:
        if self.held is not None and self.sent_at > at:
            # Not sent yet when the loss ends: it goes, and gets through, once
            # the window opens.
            return self.held.healed(at)
        return self.resend.healed(at)


@dataclass(frozen=True, eq=False)
class Held:
    """Bytes the congestion window holds back until the ACKs of the writes it
    ``awaits`` come back (the pipe also keeps them behind earlier bytes)."""

    fault: Loss
    awaits: tuple[Unacked, ...] = ()
    # When the window opens if the loss ends at a given time (see healed).
    opened: dict[float, float] = field(default_factory=dict, repr=False)
    # When the window opens, as drawn when it held the bytes back.
    at: float = 0.0

    def revealed(self, release: float, arrival: float) -> tuple[float, Late]:
        return release, self

    def rearmed(self, release: float, acked_at: float) -> tuple[float, Late]:
        shift = self.sooner()
        if shift < 0:
            return release + shift, dataclasses.replace(self, at=self.at + shift)
        return release, self

    def sooner(self) -> float:
        """How much sooner than drawn the window opens, now that the ACKs it
        awaits may have come earlier (``Loss.window_follows_acks``): zero or less."""
        if not self.fault.window_follows_acks or not self.awaits:
            return 0.0
        return min(max(write.ack_at for write in self.awaits) - self.at, 0.0)

    def healed(self, at: float) -> float:
        """When the window opens if the loss ends at ``at``: each awaited write
        whose ACK is still to come is sent again when its sender's timer next
        fires, and that retransmission and its ACK now get through. The drawn
        chain of lost ACKs and retransmissions ends there (else a write deep
        in its backoff when the loss ended held the connection for minutes
        after it). A write with no timer left waits for none; one the window
        still held back then goes once the writes it awaited are acked.

        A backlog of thousands of held writes awaits one another in a chain:
        each one's opening is kept (``opened``) and the chain walked without
        recursion, so a heal costs one visit per held write."""
        stack = [self]
        while stack:
            held = stack[-1]
            if at in held.opened:
                stack.pop()
                continue
            missing = [
                before
                for write in held.awaits
                if (before := held.unsent(write, at)) is not None and at not in before.opened
            ]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            opens = at
            for write in held.awaits:
                if write.ack_at <= at:
                    continue
                before = held.unsent(write, at)
                if before is not None:
                    opens = max(opens, before.opened[at])
                    continue
                fires = next((t for t in write.timeouts if t >= at), None)
                if fires is not None:
                    opens = max(opens, min(write.ack_at, fires + self.fault.rtt))
            held.opened[at] = opens
        return self.opened[at]

    @staticmethod
    def unsent(write: Unacked, at: float) -> Held | None:
        """What held ``write`` back if the window still did at ``at``, its ACK to
        come; else None."""
        if write.sent > at and write.ack_at > at:
            return write.held
        return None


@register
@dataclass(frozen=True, eq=False)
class Loss(Shaper):
    kind = "loss"
    flags = (
        Flag(
            "--loss",
            "probability",
            "packet loss probability 0-1, both ways: bytes arrive late, after "
            "retransmission timeouts, as with the kernel's loss",
            model="tcp",
            default=True,
        ),
    )
    probability: float = probability()
    mss: int = 1448
    rtt: float = duration(0.0)
    min_rto: float = duration(0.2)
    syn_rto: float = duration(1.0)
    max_rto: float = duration(120.0)
    recovery: float = duration(0.004)  # one jiffy at HZ=250: RACK reorder timer granularity
    delayed_ack: float = duration(0.04)  # Linux's shortest delayed ACK (TCP_DELACK_MIN)
    # The tail loss probe waits this long beyond two round trips when more than
    # one segment is in flight (Linux's TCP_TIMEOUT_MIN_US): their ACKs are not delayed.
    fast_probe: float = duration(0.002)
    tail_loss_probe: bool = True
    ack_loss: bool = True
    congestion_window: bool = True
    rto_deviation: bool = False
    probe_samples: bool = False
    ack_timers: bool = True
    sample_per_ack: bool = False
    ack_with_data: bool = False
    sack_loss: bool = True
    control_writes: bool = False
    cumulative_acks: bool = False
    window_follows_acks: bool = False
    # The sender's socket send buffer in bytes (etcdlab.proxy.faults.sndbuf):
    # while it is full the sender's writes block. 0: the proxy reads whatever
    # the sender writes, as a clean loopback hop takes it.
    send_buffer: int = 0
    method: str | None = method()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.probability >= 1.0:
            raise ValueError("probability must be below 1 (use blackhole for total loss)")
        if self.mss < 1:
            raise ValueError("mss must be at least 1 byte")
        if self.max_rto < self.min_rto:
            raise ValueError("max_rto must be at least min_rto")
        if self.send_buffer < 0:
            raise ValueError(
                "send_buffer must be 0 (unbounded) or a positive number of bytes, "
                f"not {self.send_buffer}"
            )
        if self.send_buffer and self.method is not None:
            # The socket's buffer holds every stream's bytes; the model would
            # charge only the method's and block the others with them.
            raise ValueError("send_buffer: a socket's send buffer cannot be limited to a method")

    @property
    def frame_aware(self) -> bool:
        # Telling writes apart takes every frame of both directions.
        return self.control_writes or super().frame_aware

    @property
    def needs_spans(self) -> bool:
        return self.control_writes or super().needs_spans

    def losses(self, rng: random.Random) -> int:
        """How many transmissions of one segment in a row are lost."""
        count = 0
        while rng.random() < self.probability:
            count += 1
        return count

    def backoff(self, timeouts: int, rto: float, *, probe: float | None = None) -> float:
        """Time spent in ``timeouts`` successive timeouts: the tail loss probe's
        ``probe`` first when given, then ``rto`` doubling each time up to ``max_rto``."""
        total = 0.0
        if probe is not None and timeouts:
            total, timeouts = probe, timeouts - 1
        for _ in range(timeouts):
            total += rto
            rto = min(rto * 2, self.max_rto)
        return total

    def state(self, ctx: ShapeContext) -> TcpState:
        """This pipe's sender, which starts knowing only the link's round trip."""
        state = ctx.state.get(self)
        if state is None:
            state = ctx.state[self] = TcpState(self.rtt, per_ack=self.sample_per_ack)
        assert isinstance(state, TcpState)
        return state

    def rto(self, state: TcpState) -> float:
        """The retransmission timeout now: srtt plus ``min_rto`` (with
        ``rto_deviation``, plus Linux's variance term where it exceeds
        ``min_rto``), doubled per timeout since the last sample."""
        spread = max(state.rttvar, self.min_rto) if self.rto_deviation else self.min_rto
        return min((state.srtt + spread) * 2.0 ** min(state.backoff, 32), self.max_rto)

    def probe_timeout(self, state: TcpState, *, in_flight: int = 1) -> float | None:
        """The tail loss probe's timeout: two smoothed round trips plus
        ``min_rto`` with one segment in flight (its ACK may be delayed), plus
        ``fast_probe`` with more; never later than the RTO."""
        if not self.tail_loss_probe:
            return None
        extra = self.min_rto if in_flight == 1 else self.fast_probe
        return min(2 * state.srtt + extra, self.rto(state))

    def timer_resend(
        self, at: float, lost: int, state: TcpState, *, in_flight: int = 1
    ) -> tuple[Resend, list[float]]:
        """The sends of a tail segment sent at ``at`` and lost ``lost`` times in
        a row, which only the timers recover: the tail loss probe, then the RTO
        doubling (without the probe, the RTO first). Also when the
        retransmission timeouts among them fire (the probe is no timeout; each
        later send is one), which enter the backoff then."""
        rto = self.rto(state)
        probe = self.probe_timeout(state, in_flight=in_flight)
        if probe is None:
            resend = Resend(self, at + rto, lost, min(rto * 2, self.max_rto))
            return resend, resend.sends
        resend = Resend(self, at + probe, lost, rto)
        return resend, resend.sends[1:]

    @property
    def acks_modelled(self) -> bool:
        """Are the receiver's ACKs part of the model? Only when the loss runs both
        ways (ACKs cross the same lossy path, and data each way carries them)
        and for every stream (an ACK belongs to no stream)."""
        return self.direction == BOTH and self.method is None

    def acknowledge(
        self,
        state: TcpState,
        sent: float,
        arrived: float,
        size: int,
        repaired: bool,
        ctx: ShapeContext,
        timeouts: list[float] | None = None,
        resend: Resend | None = None,
    ) -> Unacked:
        """When the (S)ACK of a write sent at ``sent``, whose last segment reaches
        the receiver at ``arrived``, gets back to its sender.

        The receiver acks at once a write that fills a hole or lies beyond one
        (``repaired``, or ``arrived`` before the bytes ahead of it), a full
        segment or more, or a second small write since its last ACK (Linux:
        ``ICSK_ACK_PUSHED2``); a lone small write it holds back until it sends
        data of its own (:meth:`piggyback`) or ``delayed_ack`` passes. An ACK is
        lost as often as data; the sender's own probe then draws a duplicate
        ACK. Every ACK gives a round-trip sample (:attr:`Unacked.sample_from`).
        ``timeouts`` are when the sender's timer fires for the write's last
        segment, ``resend`` its sends if the timers recovered it.

        With ``ack_timers``, the duplicate ACK the sender's timers draw is lost
        as often as any ACK, and each retransmission that draws it as often as
        any data (:meth:`ack_rounds`). With ``sack_loss``, a lost SACK of a
        write beyond a hole is also when the sender learns of the hole
        (:attr:`TcpState.sack_heard`, :meth:`revealed`)."""
        ack = arrived + self.rtt
        timeouts = list(timeouts or [])
        due = None
        if self.acks_modelled:
            in_order = arrived >= state.delivered_at
            if repaired or not in_order or size >= self.mss or state.ack_owed_until > sent:
                state.ack_owed_until = 0.0
            else:
                ack += self.delayed_ack
                state.ack_owed_until = ack
                due = arrived + self.delayed_ack
            probed = None
            state.sack_heard = None
            if self.ack_loss and ctx.rng.random() < self.probability:
                # Beyond a hole the sender has more than one segment out: its
                # probe is the fast one (Loss.sack_loss).
                beyond = self.sack_loss and not in_order
                in_flight = 2 if beyond else 1
                if self.ack_timers:
                    probed, fired = self.ack_rounds(state, arrived, resend, ctx.rng, in_flight)
                    ack = probed + self.rtt
                    timeouts += fired
                else:
                    ack = probed = self.drawn(state, arrived, ctx.rng, in_flight)
                if beyond:
                    state.sack_heard = ack
        # Cumulative only over what had reached the receiver in order by then.
        ack_id = next(ACK_IDS)
        own = None
        if self.cumulative_acks and self.acks_modelled:
            # As of when it leaves the receiver: a lost ACK's duplicate leaves
            # when the retransmission that draws it arrives.
            own = Ack(max(ack - self.rtt, arrived), ack, ack_id)
            state.carry(own)
        else:
            state.acked_by(ack, arrived, ack_id)
        delivered = max(state.delivered_at, arrived)
        write = Unacked(
            sent, arrived, delivered, ack, repaired, timeouts, ack_id=ack_id, size=size, own=own
        )
        if self.acks_modelled and self.probe_samples:
            write.probed = probed
        if self.ack_with_data:
            write.ack_due = due
        if own is not None:
            state.covered(write)
        state.unacked.append(write)
        if self.send_buffer:
            state.buffered.append(write)
        return write

    def ack_rounds(
        self,
        state: TcpState,
        arrived: float,
        resend: Resend | None,
        rng: random.Random,
        in_flight: int = 1,
    ) -> tuple[float, list[float]]:
        """The ACK of data that reached the receiver at ``arrived`` was lost: the
        sender's timers send the data again, the probe first, then the RTO
        doubling (if the timers recovered the data, ``resend``, the chain goes
        on from there), until a retransmission and the duplicate ACK it draws
        both get through, each lost as often as data. With nothing else in
        flight no later ACK can tell the sender sooner, and its window, one
        segment after a timeout, holds every later write meanwhile (Linux:
        the RTO retransmits the head of the queue until ``snd_una`` moves).
        Returns when that retransmission reaches the receiver, and the
        retransmission timeouts among the rounds (the probe is none)."""
        rounds = 1 + self.failed_rounds(rng)
        if resend is None or resend.arrival < arrived:
            # No timer recovered the write's last bytes (an earlier segment of
            # it came later still): the chain starts from its arrival.
            chain, fired = self.timer_resend(arrived, rounds, state, in_flight=in_flight)
            return chain.arrival, fired
        sends = Resend(self, resend.first, resend.count + rounds, resend.rto).sends
        return sends[-1], sends[resend.count :]

    def drawn(
        self, state: TcpState, arrived: float, rng: random.Random, in_flight: int = 1
    ) -> float:
        """When the sender learns that a write which reached the receiver at
        ``arrived`` did, if no ACK of it comes: its probe (or, without one, its
        RTO) sends the data again and the receiver acks the duplicate at once.
        With ``ack_timers`` that retransmission and its ACK can each be lost
        as well; every round that fails waits for the next RTO, doubling (the
        sender cannot tell a lost ACK from lost data)."""
        rounds = self.failed_rounds(rng) if self.ack_timers else 0
        return self.timer_resend(arrived, 1 + rounds, state, in_flight=in_flight)[0].arrival

    def failed_rounds(self, rng: random.Random) -> int:
        """How many retransmission rounds in a row fail because the data or the
        ACK it draws is lost (a round gets through only if both do)."""
        rounds = 0
        while rng.random() < self.probability or rng.random() < self.probability:
            rounds += 1
        return rounds

    def piggyback(self, pieces: list[Piece], sent: float, ctx: ShapeContext) -> None:
        """A write carries its sender's ACK of the peer's data: the peer's sender
        learns it when the first of the write's segments arrives.

        With ``ack_with_data`` an ACK the receiver was holding back goes with
        this write and nowhere else (Linux stops the delayed-ACK timer when data
        carries the ACK): if the write is late, so is the ACK, unless the
        sender's probe draws a duplicate first. So the sample of a lone small
        write whose ACK rode on a lost reply is as long as that reply's
        recovery, as in the kernel."""
        if not self.acks_modelled or ctx.peer_state is None:
            return
        peer = ctx.peer_state.get(self)
        if not isinstance(peer, TcpState):
            return
        carried, ack_id = min(piece.release for piece in pieces), next(ACK_IDS)
        for write in peer.unacked:
            if write.ack_due is not None and write.delivered <= sent < write.ack_due:
                drawn = self.drawn(peer, write.arrived, ctx.rng)
                if carried <= drawn:
                    write.ack_at, write.ack_id, write.probed = carried, ack_id, None
                else:
                    write.ack_at, write.ack_id = drawn, next(ACK_IDS)
                    write.probed = drawn if self.probe_samples else None
        left = sent
        if self.cumulative_acks:
            # The segment that gets through carries the ACK as of its own send
            # (a retransmission's, if the first were lost).
            left = carried
            peer.carry(Ack(carried, carried, ack_id), now=sent)
        else:
            peer.acked_by(carried, sent, ack_id)
        if self.window_follows_acks:
            peer.reopen(carried, left, ack_id)
        if peer.delivered_at <= sent:
            peer.ack_owed_until = 0.0

    def connect_sends(self, rng: random.Random) -> list[float]:
        """SYN retransmissions have no probe: sent again after ``syn_rto``, then
        twice that more, and so on. SYNs carry no stream, so a loss filtered by
        method never delays the connect."""
        if self.method is not None:
            return []
        return [self.backoff(n, self.syn_rto) for n in range(1, self.losses(rng) + 1)]

    def fast_arrival(
        self, sent_at: float, now: float, *, same_write: bool = False, heard: float | None = None
    ) -> float:
        """When the fast retransmission of a segment lost at ``sent_at`` reaches
        the receiver if a later one is sent at ``now``.

        RACK marks the hole lost when the later segment's SACK arrives if that
        segment was sent more than the reorder window (a quarter of the round
        trip) after the hole, else once the window has passed, on a timer that
        fires on the next jiffy (``recovery``). A segment of the same write is
        sent right behind the hole: always the timer. Later writes are told
        apart by the caller, not by time: the loop clock may tick in whole
        milliseconds (uvloop). A lost fast retransmission waits for the RTO
        (:class:`Resend`). ``heard``: when the SACK reaches the sender, if not
        a round trip after ``now`` (it was lost, and a probe drew it again)."""
        window = self.rtt / 4
        if same_write:
            return now + self.recovery + self.rtt
        early = window - (now - sent_at)
        heard = now + self.rtt if heard is None else heard
        return heard + (early + self.recovery if early > 0 else 0)

    def revealed(self, lost: Recovery, release: float, arrival: float) -> Resend | None:
        """The sends of a tail segment due at ``release`` if a later write's first
        segment reaches the receiver at ``arrival`` (its SACK reveals the hole);
        None if it arrives no earlier that way.

        With ``sack_loss`` that SACK is lost as often as any ACK (the draw of
        the later write's own ACK): the sender learns of the hole only when
        its probe, the later segment sent again after the fast probe's
        timeout, draws a duplicate, unless the timers bring the hole first.
        Linux then has nothing else to go on: in request/response traffic one
        segment follows a hole, so one lost SACK (and its probe's) leaves the
        hole to its RTO."""
        heard = lost.sender.sack_heard if self.sack_loss and lost.sender is not None else None
        first = self.fast_arrival(lost.sent_at, arrival, heard=heard)
        resend = Resend(self, first, lost.losses, lost.rto)
        if resend.arrival >= release:
            return None
        self._moved(lost, resend.arrival, first)
        return resend

    def rearmed(self, lost: Recovery, release: float, acked_at: float) -> Resend | None:
        """The sends of a tail segment due at ``release`` if the ACK of the other
        data in flight comes at ``acked_at``: if that is before its fast probe,
        Linux re-arms the probe then, for one segment in flight
        (``tcp_set_xmit_timer``); None if it does not."""
        if lost.fast_probe_at is None or acked_at >= lost.fast_probe_at:
            return None
        resend = Resend(self, acked_at + lost.slow_probe, lost.losses, lost.rto)
        if lost.write is not None:
            lost.write.timeouts = resend.sends[1:]  # the timer moved with the probe
        self._moved(lost, resend.arrival, resend.first if lost.losses == 1 else None)
        return resend

    def _moved(self, lost: Recovery, release: float, detected: float | None) -> None:
        """The sender's view of the write follows its lost segment, and so does
        when the sender finds the loss (``detected``: None for a timeout)."""
        if lost.sender is not None and lost.write is not None:
            lost.sender.moved(lost.write, release)
            lost.write.detected = detected

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        if not self.probability:
            return pieces
        turns = ctx.spans.turns() if self.control_writes and ctx.spans is not None else []
        if not turns:
            return self.write(pieces, ctx)
        # The transport's frames and the application's are writes of their own.
        ctx.count(self, "write_split")
        out: list[Piece] = []
        offset = 0
        for part in cut(pieces, turns):
            shaped = self.write(part, ctx, offset)
            if out:
                # This write's SACK reveals a lost tail of the writes before it,
                # as a later chunk's does (Pipe._recover).
                reveal(out, min(piece.release for piece in shaped))
            out.extend(shaped)
            offset += sum(piece.size for piece in part)
        return out

    def write(self, pieces: list[Piece], ctx: ShapeContext, offset: int = 0) -> list[Piece]:
        """Shape one write by the sender, ``pieces``, which starts ``offset`` bytes
        into the chunk read."""
        state = self.state(ctx)
        written = sent = pieces[0].release
        state.settle(sent)
        held = state.window_opens(sent) if self.congestion_window else sent
        waiting: Held | None = None
        if held > sent:
            # The congestion window is full: these bytes go out, and meet
            # their own losses, only once an ACK opens it.
            ctx.count(self, "write_held")
            size = sum(piece.size for piece in pieces)
            # Before the write joins the sender's writes: it awaits none of its own.
            waiting = Held(self, state.awaited(sent, held), at=held)
            queued = state.queued
            if queued is not None and queued[0] == held and queued[1] + size <= self.mss:
                # They join the segment waiting to go: one fate for both.
                joined = queued[2]
                state.queued = (held, queued[1] + size, joined)
                repaired = joined.late is not None
                write = self.acknowledge(state, held, joined.release, size, repaired, ctx)
                write.segments = 0  # no segment of its own
                write.held = waiting
                self.piggyback([Piece(size, written)], written, ctx)
                return [Piece(size, joined.release, joined.late)]
            pieces = [
                Piece(piece.size, max(piece.release, held), piece.late or waiting)
                for piece in pieces
            ]
            sent = held
            state.settle(sent)
        busy = bool(state.unacked)  # earlier data still in flight
        detected: float | None = None  # the first retransmission other than a timeout
        out: list[Piece] = []
        start = 0  # offset of the piece in the write
        repaired = False  # some segment of the write was lost
        tail: Piece | None = None  # its last segment, if lost, waits for the timers
        tail_hole: Recovery | None = None
        timeouts: list[float] = []  # when the timer fires for that segment
        for piece in pieces:
            at, size = piece.release, piece.size
            clean = 0  # bytes of segments delivered on time, not yet emitted
            for within in range(0, size, self.mss):
                segment = min(self.mss, size - within)
                here = offset + start + within
                if not ctx.carries(self.method, here, here + segment):
                    clean += segment
                    continue
                lost = self.losses(ctx.rng)
                if not lost:
                    clean += segment
                    continue
                ctx.count(self, "segment_lost")
                repaired = True
                if clean:
                    out.append(Piece(clean, at, piece.late))
                    clean = 0
                rto = self.rto(state)
                if within + segment < size:
                    # A segment of the same write follows and gets SACKed.
                    # Its lost retransmissions wait for the RTO; one RTO resends
                    # every hole of the write, so they add nothing to the backoff.
                    first = self.fast_arrival(at, at, same_write=True)
                    resend = Resend(self, first, lost, rto)
                    detected = first if detected is None else min(detected, first)
                    sacked = Recovery(self, at, lost, rto, resend, sacked=True, held=waiting)
                    out.append(Piece(segment, resend.arrival, sacked))
                    continue
                in_flight = 2 if busy or start + within else 1
                resend, timeouts = self.timer_resend(at, lost, state, in_flight=in_flight)
                if not timeouts:
                    # The probe got through: it finds the loss, no timeout does.
                    detected = resend.first if detected is None else min(detected, resend.first)
                hole = Recovery(self, at, lost, rto, resend, held=waiting)
                if in_flight > 1:
                    # The fast probe, unless an ACK of the rest comes first.
                    slow = self.probe_timeout(state)
                    fast = self.probe_timeout(state, in_flight=in_flight)
                    if slow is not None and fast is not None and fast < slow:
                        hole = dataclasses.replace(hole, fast_probe_at=at + fast, slow_probe=slow)
                tail = Piece(segment, resend.arrival, hole)
                tail_hole = hole
                out.append(tail)
            if clean:
                out.append(Piece(clean, at, piece.late))
            start += size
        arrived = max(piece.release for piece in out)
        in_flight = state.in_flight(sent)
        chain = tail_hole.resend if tail is not None and tail_hole is not None else None
        write = self.acknowledge(state, sent, arrived, start, repaired, ctx, timeouts, chain)
        write.segments = -(-start // self.mss)
        write.in_flight = in_flight + write.segments
        write.detected = detected
        write.held = waiting
        if tail is not None and tail_hole is not None:
            tail.late = dataclasses.replace(tail_hole, write=write, sender=state)
        if held > written:
            state.queued = (held, start % self.mss or self.mss, out[-1])
            # Held data carries no ACK: the receiver's ACK goes alone, at once.
            self.piggyback([Piece(start, written)], written, ctx)
        else:
            self.piggyback(out, sent, ctx)
        return out


def cut(pieces: list[Piece], offsets: list[int]) -> list[list[Piece]]:
    """``pieces`` (one chunk's bytes) cut at the byte ``offsets``, ascending."""
    parts: list[list[Piece]] = [[]]
    cuts = iter(offsets)
    at = next(cuts, None)
    start = 0  # the chunk's offset of what is left of the piece
    for piece in pieces:
        end = start + piece.size
        while at is not None and at < end:
            if at > start:
                parts[-1].append(Piece(at - start, piece.release, piece.late))
                start = at
            if parts[-1]:
                parts.append([])
            at = next(cuts, None)
        if end > start:
            parts[-1].append(Piece(end - start, piece.release, piece.late))
        start = end
    return [part for part in parts if part]

"""Public incidents' observations as claims, beside the failure analysis's.

Each incident scenario (``etcdlab.scenario.spec.INCIDENTS``) replays the
conditions of one public report; its claims paraphrase what the reporters
observed (never their words) and are judged like the analysis's
(:mod:`etcdlab.report.claims`): ``agrees`` when the lab reproduces the
observation, ``differs`` when it exercised the situation and saw something
else (an honest "not reproduced", with the numbers), ``not observed`` when
the run could not show it. A run of an incident scenario is judged on the
analysis's claims and on its incident's, found by the scenario's name.

The thresholds are the claims' words made countable; each is named here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from etcdlab.common.timeline import ErrorClass, EventKind, Request, Timeline
from etcdlab.report.claims import CLAIMS, Claim, Finding, Verdict, api_requests

# Workload writes through the apiservers (the elector's lock reads are
# transactions too, so "txn" is left out).
WRITES = frozenset({"create", "update", "delete"})
# A cluster that "carried on" served at least this share of the writes.
CARRIED_ON = 0.5
# "Each time" the leader's network went down: elections in at least this share
# of the down phases (and returns of leadership in this share of its losses).
EACH_TIME = 0.5
# "Blocked": no agreed raft leader, or writes failing, for this share of the fault.
BLOCKED = 0.5
# A watch cache behind etcd for this long (unscaled seconds) serves stale data:
# a live watch trails by milliseconds.
STALE_FOR = 10.0
# A write that failed only after this long (unscaled seconds) timed out: at the
# apiserver's deadline (a context error) or at etcd's own request timeout
# (UNAVAILABLE "request timed out", a cluster error). A quicker failure is a refusal.
TIMED_OUT_AFTER = 1.0
# The apiserver's keepalive (30 s + 10 s) has had time to notice a dead member.
KEEPALIVE_NOTICED = 45.0
# etcd 3.5 sends a returning follower a snapshot, the path #8411's bug was in,
# only when it missed more than this many raft entries (SnapshotCatchUpEntries)
# past the leader's last snapshot; a run of a local cluster counts the snapshots
# each member received (gauge snapshots_received/etcd-N), which says it outright.
SNAPSHOT_CATCH_UP = 5000


@dataclass(frozen=True)
class Incident:
    scenario: str  # the built-in scenario's name
    claims: tuple[Claim, ...]


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


def _fault(timeline: Timeline) -> tuple[float, float] | None:
    """The first fault's window on the run's clock."""
    if not timeline.faults:
        return None
    window = timeline.faults[0]
    return window.start, window.end


def _members(timeline: Timeline) -> list[str]:
    """The faulted members (``etcd-1``)."""
    return timeline.faults[0].target.split(",") if timeline.faults else []


def _index(member: str) -> int:
    return int(member.rsplit("-", 1)[1])


def _endpoint(timeline: Timeline, member: str) -> str | None:
    endpoints = timeline.settings.get("member_endpoints") or []
    index = _index(member)
    return str(endpoints[index]) if index < len(endpoints) else None


def _writes(timeline: Timeline, start: float, end: float) -> list[Request]:
    return [r for r in api_requests(timeline) if r.op in WRITES and start <= r.t - r.latency < end]


def _no_fault() -> Finding:
    return Finding(Verdict.NOT_OBSERVED, "the scenario injected no fault")


def _span(timeline: Timeline, start: float, end: float) -> tuple[float, float]:
    return timeline.unscaled_since_fault(start), timeline.unscaled_since_fault(end)


# -- kubernetes/kubernetes#72796: an MTU black hole between members ----------------


def writes_time_out(timeline: Timeline) -> Finding:
    if (window := _fault(timeline)) is None:
        return _no_fault()
    writes = _writes(timeline, *window)
    if not writes:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver writes during the fault")
    failed = [r for r in writes if not r.ok]
    slow = timeline.scaled(TIMED_OUT_AFTER)
    timed_out = [r for r in failed if r.error is ErrorClass.CONTEXT or r.latency >= slow]
    measured = (
        f"{len(timed_out)} of {len(writes)} writes timed out during the fault, "
        f"at the apiserver's deadline or etcd's ({len(failed)} failed in all)"
    )
    if not timed_out:
        return Finding(Verdict.DIFFERS, measured, _span(timeline, *window))
    first = timeline.unscaled_since_fault(min(r.t for r in timed_out))
    return Finding(Verdict.AGREES, measured, _span(timeline, *window), first)


def health_keeps_passing(timeline: Timeline) -> Finding:
    if (window := _fault(timeline)) is None:
        return _no_fault()
    start, end = window
    # Livez's etcd check is recorded under the apiserver's own name.
    probes = [
        h
        for h in timeline.health
        if h.component.startswith("apiserver") and "/" not in h.component and start <= h.t < end
    ]
    if not probes:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver health check ran during the fault")
    failed = [h for h in probes if not h.healthy]
    measured = (
        f"{len(failed)} of {len(probes)} livez etcd checks failed during the fault "
        "(the check is the linearizable read #72896 brought in; the report's was a member list)"
    )
    if not failed:
        return Finding(Verdict.AGREES, measured, _span(timeline, *window))
    first = timeline.unscaled_since_fault(failed[0].t)
    return Finding(Verdict.DIFFERS, measured, _span(timeline, *window), first)


def cluster_carries_on(timeline: Timeline) -> Finding:
    """One member out, the others served: most writes through the apiservers succeeded."""
    if (window := _fault(timeline)) is None:
        return _no_fault()
    writes = _writes(timeline, *window)
    if not writes:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver writes during the fault")
    ok = sum(r.ok for r in writes)
    cut = set(_members(timeline))
    samples = [h for h in timeline.health if h.component in cut and window[0] <= h.t < window[1]]
    healthy = sum(h.healthy for h in samples)
    health = (
        f"; the cut-off member's /health was healthy in {_pct(healthy, len(samples))} of samples"
        if samples
        else ""
    )
    verdict = Verdict.AGREES if ok / len(writes) >= CARRIED_ON else Verdict.DIFFERS
    measured = f"{ok} of {len(writes)} writes succeeded during the fault{health}"
    return Finding(verdict, measured, _span(timeline, *window))


# -- etcd-io/etcd#13665: the leader's network flapping --------------------------------


def agreed_leaders(timeline: Timeline) -> list[tuple[float, int | None]]:
    """When the leader a majority of members follow changed, and to whom (member
    index; None: no majority follows one), from each member's raft view."""
    names = timeline.gauge_names("raft_leader/")
    samples = sorted(
        (g.t, name, int(g.value)) for name in names for g in timeline.gauge_series(name)
    )
    views: dict[str, int] = {}
    changes: list[tuple[float, int | None]] = []
    for t, name, leader in samples:
        views[name] = leader
        counts: dict[int, int] = {}
        for view in views.values():
            if view >= 0:
                counts[view] = counts.get(view, 0) + 1
        agreed = next((m for m, n in counts.items() if n > len(names) / 2), None)
        if not changes or changes[-1][1] != agreed:
            changes.append((t, agreed))
    return changes


def _down_phases(timeline: Timeline) -> int:
    """How many times the flapping took the links down (one per period)."""
    window = timeline.faults[0]
    steps = timeline.settings.get("faults") or [{}]
    period = float(steps[0].get("period", 10.0))
    length = timeline.unscaled(window.end - window.start)
    return max(1, int(-(-length // period)))


def _leaders_in(timeline: Timeline, start: float, end: float) -> list[tuple[float, int | None]]:
    return [(t, leader) for t, leader in agreed_leaders(timeline) if start <= t < end]


def _new_leaders(changes: Iterable[tuple[float, int | None]], before: int | None) -> list[int]:
    """Each new leader in turn (a leaderless gap between two is no change)."""
    elected: list[int] = []
    current = before
    for _, leader in changes:
        if leader is not None and leader != current:
            elected.append(leader)
            current = leader
    return elected


def _leader_before(timeline: Timeline, start: float) -> int | None:
    earlier = [leader for t, leader in agreed_leaders(timeline) if t < start]
    return earlier[-1] if earlier else None


def elections_each_time(timeline: Timeline) -> Finding:
    if (window := _fault(timeline)) is None:
        return _no_fault()
    if not timeline.gauge_names("raft_leader/"):
        return Finding(Verdict.NOT_OBSERVED, "no member's raft view was sampled")
    elected = _new_leaders(_leaders_in(timeline, *window), _leader_before(timeline, window[0]))
    phases = _down_phases(timeline)
    verdict = Verdict.AGREES if len(elected) >= EACH_TIME * phases else Verdict.DIFFERS
    measured = f"{len(elected)} new raft leaders in {phases} times the links went down"
    return Finding(verdict, measured, _span(timeline, *window))


def leadership_returns(timeline: Timeline) -> Finding:
    if (window := _fault(timeline)) is None:
        return _no_fault()
    if not timeline.gauge_names("raft_leader/"):
        return Finding(Verdict.NOT_OBSERVED, "no member's raft view was sampled")
    flapping = _index(_members(timeline)[0])
    before = _leader_before(timeline, window[0])
    elected = _new_leaders(_leaders_in(timeline, *window), before)
    # Leadership lost by the flapping member, and won back by it.
    current, lost = before, 0
    for leader in elected:
        lost += current == flapping
        current = leader
    returned = sum(leader == flapping for leader in elected)
    if not lost:
        return Finding(
            Verdict.NOT_OBSERVED,
            f"etcd-{flapping} never lost the raft leadership during the fault",
            _span(timeline, *window),
        )
    verdict = Verdict.AGREES if returned >= EACH_TIME * lost else Verdict.DIFFERS
    measured = f"etcd-{flapping} lost the raft leadership {lost} times and won it back {returned}"
    if verdict is Verdict.DIFFERS:
        measured += (
            " (raft elects only a candidate whose log holds every committed entry, and "
            "writes went on while it was away; with pre-vote, etcd 3.5's default, a member "
            "back from a cut does not even start an election)"
        )
    return Finding(verdict, measured, _span(timeline, *window))


def leaderless_share(timeline: Timeline, start: float, end: float) -> float:
    """Share of ``start``-``end`` (run clock) with no leader a majority follows."""
    if end <= start:
        return 0.0
    changes = agreed_leaders(timeline)
    current = _leader_before(timeline, start)
    cursor, without = start, 0.0
    for t, leader in changes:
        if t < start:
            continue
        if t >= end:
            break
        if current is None:
            without += t - cursor
        cursor, current = t, leader
    if current is None:
        without += end - cursor
    return without / (end - start)


def cluster_blocked(timeline: Timeline) -> Finding:
    if (window := _fault(timeline)) is None:
        return _no_fault()
    writes = _writes(timeline, *window)
    if not writes and not timeline.gauge_names("raft_leader/"):
        return Finding(Verdict.NOT_OBSERVED, "no writes and no raft views during the fault")
    leaderless = leaderless_share(timeline, *window) if timeline.gauge_names("raft_leader/") else 0
    failing = sum(not r.ok for r in writes) / len(writes) if writes else 0.0
    blocked = leaderless >= BLOCKED or failing >= BLOCKED
    measured = (
        f"no agreed raft leader for {leaderless:.0%} of the fault; "
        f"{failing:.0%} of {len(writes)} apiserver writes failed"
    )
    return Finding(
        Verdict.AGREES if blocked else Verdict.DIFFERS, measured, _span(timeline, *window)
    )


# -- etcd-io/etcd#8411: a member cut off for long, then back ---------------------------


def stale_stretches(timeline: Timeline, apiserver: str) -> list[tuple[float, float]]:
    """Run-clock stretches over which the apiserver's watch cache stayed behind
    etcd at every sample (from the first sample behind to the first caught up)."""
    stretches: list[tuple[float, float]] = []
    since: float | None = None
    series = timeline.gauge_series(f"watch_cache_behind/{apiserver}")
    for sample in series:
        if sample.value > 0 and since is None:
            since = sample.t
        elif sample.value <= 0 and since is not None:
            stretches.append((since, sample.t))
            since = None
    if since is not None and series:
        stretches.append((since, series[-1].t))
    return stretches


def cache_stale_after_return(timeline: Timeline) -> Finding:
    if (window := _fault(timeline)) is None:
        return _no_fault()
    names = [n.split("/", 1)[1] for n in timeline.gauge_names("watch_cache_behind/")]
    if not names:
        return Finding(Verdict.NOT_OBSERVED, "no apiserver watch cache was sampled")
    healed = window[1]
    longest, worst, reads = 0.0, "", 0
    for apiserver in names:
        for start, end in stale_stretches(timeline, apiserver):
            if end < healed:
                continue
            length = timeline.unscaled(end - max(start, healed))
            served = sum(
                r.component == apiserver and r.source == "cache" and max(start, healed) <= r.t < end
                for r in timeline.requests
            )
            if length > longest:
                longest, worst, reads = length, apiserver, served
    span = (timeline.unscaled_since_fault(healed), float("inf"))
    path = _catch_up(timeline, *window)
    if longest >= STALE_FOR:
        measured = (
            f"{worst}'s watch cache stayed behind etcd for {longest:.1f} s after the member "
            f"came back, serving {reads} reads from it; {path}"
        )
        return Finding(Verdict.AGREES, measured, span)
    measured = (
        f"every watch cache kept up after the member came back (longest behind: "
        f"{longest:.1f} s); {path}"
    )
    return Finding(Verdict.DIFFERS, measured, span)


def _catch_up(timeline: Timeline, start: float, end: float) -> str:
    """How the cut-off member caught up: from a snapshot the leader sent (the
    reported bug's path) or from the leader's log, in words."""
    missed = f"it missed {_revisions_missed(timeline, start, end)} revisions while cut off"
    sent = [timeline.gauge_series(f"snapshots_received/{member}") for member in _members(timeline)]
    if sent and all(sent):
        received = int(sum(series[-1].value for series in sent))
        if received:
            return (
                f"{missed}, and the leader sent it {received} "
                f"snapshot{'s' if received > 1 else ''} of the database "
                "(etcd_network_snapshot_receive_success): the path of the reported bug ran"
            )
        return (
            f"{missed}, and no snapshot was sent: it caught up from the leader's log (etcd "
            f"keeps {SNAPSHOT_CATCH_UP} raft entries behind its last snapshot)"
        )
    if _revisions_missed(timeline, start, end) <= SNAPSHOT_CATCH_UP:
        return (
            f"{missed}, fewer than the {SNAPSHOT_CATCH_UP} raft entries beyond which etcd "
            "sends a snapshot (the path of the reported bug): it caught up from the log"
        )
    return f"{missed} (whether the leader sent it a snapshot was not sampled)"


def _revisions_missed(timeline: Timeline, start: float, end: float) -> int:
    series = timeline.gauge_series("etcd_revision")
    inside = [g.value for g in series if start <= g.t <= end]
    return int(max(inside) - min(inside)) if inside else 0


# -- kubernetes/kubernetes#128812: a member's host shut down ---------------------------


def _dead(timeline: Timeline) -> tuple[tuple[float, float], str] | Finding:
    """The fault's window (run clock) and the shut-down member's endpoint, or
    why the run cannot tell."""
    if (window := _fault(timeline)) is None:
        return _no_fault()
    members = _members(timeline)
    endpoint = _endpoint(timeline, members[0]) if members else None
    if endpoint is None:
        return Finding(Verdict.NOT_OBSERVED, "the run did not record the members' endpoints")
    return window, endpoint


def _events_on(
    timeline: Timeline, kind: EventKind, detail: str, window: tuple[float, float]
) -> list[float]:
    """When the apiservers' clients recorded ``kind`` with ``detail`` in ``window``."""
    return [
        e.t
        for e in timeline.events
        if e.kind is kind
        and e.component.startswith("apiserver")
        and e.detail.startswith(detail)
        and window[0] <= e.t < window[1]
    ]


def keeps_dialing(timeline: Timeline) -> Finding:
    if isinstance(dead := _dead(timeline), Finding):
        return dead
    window, endpoint = dead
    dials = _events_on(timeline, EventKind.TRANSPORT_STATE, f"{endpoint} CONNECTING ", window)
    # Still dialling in the last quarter of the fault: it never gave the member up.
    late = window[0] + 0.75 * (window[1] - window[0])
    measured = f"{len(dials)} connection attempts to the shut-down member during the fault"
    if not dials:
        return Finding(Verdict.DIFFERS, measured, _span(timeline, *window))
    last = timeline.unscaled_since_fault(dials[-1])
    measured += f", the last {last:.1f} s after it went down"
    verdict = Verdict.AGREES if dials[-1] >= late else Verdict.DIFFERS
    return Finding(verdict, measured, _span(timeline, *window), last)


def keepalive_notices(timeline: Timeline) -> Finding:
    if isinstance(dead := _dead(timeline), Finding):
        return dead
    window, endpoint = dead
    closed = _events_on(timeline, EventKind.KEEPALIVE_FAILURE, f"{endpoint} ", window)
    if not closed:
        return Finding(
            Verdict.DIFFERS,
            "no connection to the shut-down member was closed by a keepalive timeout",
            _span(timeline, *window),
        )
    first = timeline.unscaled_since_fault(closed[0])
    measured = (
        f"{len(closed)} connections to it closed by keepalive timeouts, the first "
        f"{first:.1f} s after it went down"
    )
    return Finding(Verdict.AGREES, measured, _span(timeline, *window), first)


def keeps_sending(timeline: Timeline) -> Finding:
    if isinstance(dead := _dead(timeline), Finding):
        return dead
    (start, end), endpoint = dead
    noticed = timeline.run_time_at(KEEPALIVE_NOTICED)
    if end <= noticed:
        return Finding(
            Verdict.NOT_OBSERVED,
            f"the fault ended before the keepalive could notice ({KEEPALIVE_NOTICED:g} s)",
        )
    sent = [
        r
        for r in api_requests(timeline)
        if r.member == endpoint and r.source == "etcd" and noticed <= r.t - r.latency < end
    ]
    span = (KEEPALIVE_NOTICED, timeline.unscaled_since_fault(end))
    if sent:
        failed = sum(not r.ok for r in sent)
        return Finding(
            Verdict.AGREES,
            f"{len(sent)} apiserver requests went to the shut-down member after "
            f"{KEEPALIVE_NOTICED:g} s ({failed} failed)",
            span,
            timeline.unscaled_since_fault(sent[0].t),
        )
    before = [r for r in api_requests(timeline) if r.member == endpoint and start <= r.t < end]
    last = (
        f"; the last one it was given ended "
        f"{timeline.unscaled_since_fault(before[-1].t):.1f} s after it went down"
        if before
        else ""
    )
    return Finding(
        Verdict.DIFFERS,
        f"no apiserver request went to the shut-down member after {KEEPALIVE_NOTICED:g} s{last}",
        span,
    )


_72796 = "Incident kubernetes/kubernetes#72796"
_13665 = "Incident etcd-io/etcd#13665"
_8411 = "Incident etcd-io/etcd#8411"
_128812 = "Incident kubernetes/kubernetes#128812"

INCIDENTS: dict[str, Incident] = {
    incident.scenario: incident
    for incident in (
        Incident(
            "k8s-72796",
            (
                Claim("k8s-72796.carried-on", _72796,
                       "etcd dropped the member behind the broken path out of the quorum and "
                       "the others carried on", cluster_carries_on, "requests"),
                Claim("k8s-72796.writes-time-out", _72796,
                       "etcd write requests through the apiserver timed out",
                       writes_time_out, "requests"),
                Claim("k8s-72796.health-passes", _72796,
                       "the apiserver's etcd health check kept passing meanwhile",
                       health_keeps_passing, "health"),
            ),
        ),
        Incident(
            "etcd-13665",
            (
                Claim("etcd-13665.elections", _13665,
                       "each time the leader's host dropped off, the cluster elected a new "
                       "leader", elections_each_time, "health"),
                Claim("etcd-13665.leadership-returns", _13665,
                       "leadership went back to the flapping member each time it was "
                       "reachable again", leadership_returns, "health"),
                Claim("etcd-13665.blocked", _13665,
                       "the endless elections left the whole cluster more or less blocked",
                       cluster_blocked, "requests"),
            ),
        ),
        Incident(
            "etcd-8411",
            (
                Claim("etcd-8411.carried-on", _8411,
                       "etcd kept working while one member was cut off from the leader",
                       cluster_carries_on, "requests"),
                Claim("etcd-8411.stale-cache", _8411,
                       "after a long cut, the member came back and the apiserver's watch "
                       "cache no longer received the changes: it served stale data",
                       cache_stale_after_return, "requests"),
            ),
        ),
        Incident(
            "k8s-128812",
            (
                Claim("k8s-128812.keepalive", _128812,
                       "calls on the shut-down member failed with keepalive ping timeouts",
                       keepalive_notices, "events"),
                Claim("k8s-128812.keeps-dialing", _128812,
                       "the apiserver kept dialling the shut-down member, each dial timing "
                       "out", keeps_dialing, "events"),
                Claim("k8s-128812.keeps-sending", _128812,
                       "the apiserver kept using the shut-down member (requests went to it)",
                       keeps_sending, "requests"),
            ),
        ),
    )
}  # fmt: skip


def claims_for(scenario: str) -> tuple[Claim, ...]:
    """The analysis's claims, then the incident's if ``scenario`` replays one."""
    incident = INCIDENTS.get(scenario)
    return CLAIMS + (incident.claims if incident is not None else ())


def evaluate(timeline: Timeline) -> list[tuple[Claim, Finding]]:
    return [(claim, claim.evaluate(timeline)) for claim in claims_for(timeline.scenario)]

"""The scenario engine: a cluster behind fault proxies, the control plane, the faults.

Locally it starts a 3-member :class:`~etcdlab.cluster.local.LocalCluster` with a
proxy link in front of each member's client port and one in front of its peer
port (each member advertises its peer proxy, so raft traffic dialled to it
crosses it). Against an existing cluster (``endpoints``, e.g. compose), link
faults go through the proxies' control API (``proxy_control``) and process
faults (kill, pause) are not available. With ``network="kernel"`` the local
members have no proxies and the kernel drops the packets (:mod:`.kernel`).

Times: a scenario's times are real seconds, multiplied by ``time_scale``. Faults
start counting after the warm-up (the control plane elected its leaders and the
workloads converged).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from etcdlab.client.errors import EtcdError
from etcdlab.client.etcd import EtcdClient
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common import stopping
from etcdlab.common.clock import MonotonicClock
from etcdlab.common.timeline import FaultKind, Health, Recorder, Request, Timeline, quantile
from etcdlab.common.timescale import UNSCALED, TimeScale
from etcdlab.controlplane.plane import KCM_LEASE, PlaneConfig
from etcdlab.proxy.driver import ControlFaults, FaultDriver, LinkFaults
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.proxy.faults.mtu import MtuBlackhole
from etcdlab.proxy.faults.sndbuf import LINUX_SEND_BUFFER
from etcdlab.proxy.link import ProxyLink
from etcdlab.proxy.server import ProxyServer
from etcdlab.report.render import Outcome, ReportPaths, summary, write_report
from etcdlab.scenario import components, fidelity, goclients, kernel
from etcdlab.scenario.spec import (
    MEMBERS,
    PROCESS_KINDS,
    FaultStep,
    FieldError,
    Scenario,
    WriteBurst,
    target_members,
)

# Faults only a local cluster can inject: it owns the processes, and it knows the leader.
LOCAL_ONLY_KINDS = (*PROCESS_KINDS, "flapping")
LOCAL_ONLY_TARGETS = ("leader", "follower")
NETWORKS = ("proxy", "kernel")  # who makes the faults: fault proxies, or nftables (kernel.py)
CLIENTS = ("python", "go")  # the emulated control plane, or the Go reference's clients
Heal = Callable[[], Awaitable[None]]
KINDS = {
    "loss": FaultKind.LOSS,
    "partition-minority": FaultKind.PARTITION_MINORITY,
    "partition-majority": FaultKind.PARTITION_MAJORITY,
    "kill": FaultKind.KILL,
    "pause": FaultKind.PAUSE,
    "flapping": FaultKind.FLAPPING,
    "mtu": FaultKind.MTU,
    "latency": FaultKind.LATENCY,
}
# Kinds the kernel network cannot make (it drops packets: kernel.rule), refused
# before anything starts.
NOT_KERNEL_KINDS = ("mtu", "latency")

PARTIAL_PARTITION = (
    "the members' IDs could not be read, so partitions blackhole each member's client "
    "link and the peer connections dialled to it, but not the connections it dials "
    "to its peers: the partition is partial"
)


@dataclass(frozen=True)
class RunOptions:
    time_scale: TimeScale = UNSCALED
    seed: int = 0
    out: Path = Path("etcdlab-report")
    duration: float | None = None  # real seconds after the warm-up; None: the scenario's
    endpoints: tuple[str, ...] = ()  # an existing cluster (through its proxies)
    proxy_control: str | None = None  # http://host:port of the proxies' control API
    warmup_timeout: float = 120.0  # real seconds, not scaled: cluster start is not
    plane: PlaneConfig = field(default_factory=PlaneConfig)
    network: str = "proxy"
    clients: str = "python"
    etcd: Path | None = None  # etcd server binary of the local cluster; None: the default

    def __post_init__(self) -> None:
        # The edge of a run: every component below gets configs scaled by this.
        object.__setattr__(self, "time_scale", TimeScale(self.time_scale))
        fidelity.check(self.time_scale)
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}, not {self.network!r}")
        if self.network == "kernel" and self.endpoints:
            raise ValueError("network 'kernel' starts its own cluster: no endpoints")
        if self.network == "kernel" and self.etcd is not None:
            raise ValueError("network 'kernel' runs the default etcd: set ETCDLAB_ETCD instead")
        if self.clients not in CLIENTS:
            raise ValueError(f"clients must be one of {', '.join(CLIENTS)}, not {self.clients!r}")
        if self.clients == "go" and self.time_scale != UNSCALED:
            raise ValueError(
                "clients 'go' runs the real Go code, whose keepalive and dial timeouts "
                "are the apiserver's constants: time_scale must be 1"
            )
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.proxy_control and not self.endpoints:
            raise ValueError("proxy_control needs endpoints (the proxies' client addresses)")
        if self.proxy_control and not self.proxy_control.startswith(("http://", "https://")):
            raise ValueError(f"proxy_control must be an http:// URL, not {self.proxy_control!r}")


def _links(step: FaultStep) -> tuple[str, ...]:
    return ("client", "peer") if step.links == "all" else (step.links,)


Placement = tuple[int, str, str, str | None]  # link's member, link kind, fault name, dialer


def placements_of(
    step: FaultStep, members: list[int], member_ids: list[str] | None
) -> list[Placement]:
    """Where "every link of these members" is: their own links (every connection)
    and, on the other members' peer links, the connections these members dialled
    (raft streams and pipelines they opened), which the proxy tells apart by the
    dialer's member ID. Without the IDs only the members' own links are faulted."""
    placements: list[Placement] = []
    for member in members:
        for kind in _links(step):
            placements.append((member, kind, f"{step.kind}-{member}", None))
        if "peer" not in _links(step) or member_ids is None:
            continue
        for other in range(MEMBERS):
            if other != member:
                placements.append((other, "peer", f"{step.kind}-from-{member}", member_ids[member]))
    return placements


def link_fault(step: FaultStep, name: str, dialer: str | None, kind: str = "client") -> Fault:
    """The network fault a step puts on one link of ``kind`` (real seconds, like
    the step). A loss on a peer link keeps its senders' send buffers as Linux
    sizes them: raft's stream writers block on a full one, and etcd's write
    deadline then ends the stream (the peer links' ``write_deadline``)."""
    if step.kind == "loss":
        send_buffer = LINUX_SEND_BUFFER if kind == "peer" else 0
        return Loss(step.probability, name=name, dialer=dialer, send_buffer=send_buffer)
    if step.kind == "mtu":
        return MtuBlackhole(mtu=step.mtu, name=name, dialer=dialer)
    if step.kind == "latency":
        return Latency(latency=step.latency, jitter=step.jitter, name=name, dialer=dialer)
    return Blackhole(name=name, dialer=dialer)


class ScenarioFaults:
    """A scenario's fault steps: network faults through ``links``, a driver of
    the proxy links named ``etcd-<i>-client`` and ``etcd-<i>-peer`` (here or
    behind a control API, as compose.yaml names them), and process faults
    (kill, pause) on ``cluster`` when the cluster is local. ``member_ids`` (hex)
    let a fault reach the connections a member dialled; a local cluster's are read
    from it. ``scale`` is the run's, for the flapping period; the faults go to
    the driver as written."""

    def __init__(
        self,
        links: FaultDriver,
        scale: TimeScale,
        cluster: LocalCluster | None = None,
        member_ids: list[str] | None = None,
    ) -> None:
        self.links = links
        self._scale = scale
        self.cluster = cluster
        self.member_ids = member_ids
        self._count = 0
        self._leaders: dict[tuple[float, str], asyncio.Task[int | None]] = {}

    def leader(self) -> int | None:
        return None if self.cluster is None else self.cluster.leader()

    async def members(self, step: FaultStep) -> tuple[list[int], int | None]:
        """The members ``step`` faults now, and the raft leader then. Steps that
        begin together with the same target share one look at the leader, so a
        loss and a latency on the "leader" (a sweep cell) fault the same member."""
        key = (step.at, step.target)
        if key not in self._leaders:
            self._leaders[key] = asyncio.create_task(asyncio.to_thread(self.leader))
        # Shielded: a step cancelled while it waits leaves the look to the others.
        leader = await asyncio.shield(self._leaders[key])
        return resolve(step.target, leader), leader

    async def apply(self, step: FaultStep, members: list[int]) -> Heal:
        if step.kind in ("kill", "pause"):
            return self._process_fault(step, members)
        self._count += 1
        ids = self.member_ids
        if ids is None and self.cluster is not None:
            ids = [f"{m.member_id:x}" for m in self.cluster.members]
        placements = [
            (f"etcd-{member}-{kind}", link_fault(step, f"s{self._count}-{name}", dialer, kind))
            for member, kind, name, dialer in placements_of(step, members, ids)
        ]
        if step.kind == "flapping":
            return self._flap(placements, step.period)
        return (await self.links.apply(placements)).remove

    def _process_fault(self, step: FaultStep, members: list[int]) -> Heal:
        cluster = self.cluster
        if cluster is None:
            raise ValueError(f"a {step.kind} fault needs a local cluster (no --endpoints)")
        if step.kind == "kill":
            for member in members:
                cluster.kill(member)

            async def restart() -> None:
                for member in members:
                    await asyncio.to_thread(cluster.restart, member)

            return restart
        for member in members:
            cluster.pause(member)

        async def resume() -> None:
            for member in members:
                cluster.resume(member)

        return resume

    def _flap(self, placements: list[tuple[str, Fault]], period: float) -> Heal:
        """Down for half of each ``period`` (real seconds), up for the other half."""
        half = self._scale.scaled(period / 2)

        async def flap() -> None:
            while True:
                applied = await self.links.apply(placements)
                try:
                    await asyncio.sleep(half)
                finally:
                    await applied.remove()
                await asyncio.sleep(half)

        task = asyncio.create_task(flap())

        async def heal() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return heal


async def member_ids(endpoints: Sequence[str]) -> list[str] | None:
    """The hex member ID behind each client endpoint (the proxies' dialer names)."""
    ids = []
    async with EtcdClient(endpoints, name="discovery") as client:
        for endpoint in endpoints:
            try:
                status = await client.status(endpoint=endpoint, timeout=5.0)
            except EtcdError:
                return None
            ids.append(f"{status.header.member_id:x}")
    return ids


def check(scenario: Scenario, options: RunOptions) -> None:
    """What the scenario needs that these options cannot give, before anything starts."""
    if options.clients == "go":
        goclients.oracle_binary()  # a missing build is one line, not a failed run
    if options.network == "kernel":
        for index, step in enumerate(scenario.faults):
            if step.kind in NOT_KERNEL_KINDS:
                raise FieldError(
                    f"fault[{index}].kind",
                    f"the kernel network makes loss and blackholes only, not {step.kind}: "
                    "use --network proxy",
                )
    if not options.endpoints:
        return
    if scenario.etcd_args:
        raise ValueError(
            f"scenario {scenario.name} runs etcd with {' '.join(scenario.etcd_args)}: "
            "it needs a local cluster (no --endpoints)"
        )
    for index, step in enumerate(scenario.faults):
        if options.proxy_control is None:
            raise FieldError(
                f"fault[{index}]", "injecting faults into --endpoints needs --proxy-control"
            )
        if step.kind in LOCAL_ONLY_KINDS:
            raise FieldError(
                f"fault[{index}].kind",
                f"a {step.kind} fault needs a local cluster (no --endpoints)",
            )
        if step.target in LOCAL_ONLY_TARGETS:
            raise FieldError(
                f"fault[{index}].target",
                f"{step.target!r} needs a local cluster (no --endpoints): name member indexes",
            )


def resolve(target: str, leader: int | None) -> list[int]:
    """The members ``target`` names now; RuntimeError if it names the leader and
    there is none (the cluster lost it, e.g. to an earlier fault)."""
    members = target_members(target)
    if members is not None:
        return members
    if leader is None:
        raise RuntimeError(f"target {target!r}: the cluster has no raft leader now")
    return [leader] if target == "leader" else [(leader + 1) % MEMBERS]


def server_flags(time_scale: float, etcd_args: Sequence[str] = ()) -> ServerFlags:
    flags = ServerFlags.scaled(time_scale)
    # Progress notifications keep the watch cache fresh while nothing changes.
    interval = max(0.1, TimeScale(time_scale).scaled(2.0))
    return replace(
        flags,
        extra_args=(
            *flags.extra_args,
            f"--experimental-watch-progress-notify-interval={round(interval * 1000)}ms",
            *etcd_args,
        ),
    )


Progress = Callable[[str], None]


async def run(
    scenario: Scenario, options: RunOptions, progress: Progress = print
) -> tuple[dict[str, Any], ReportPaths]:
    """Run ``scenario`` and write its report. Cancelled (a signal) or failed, it still
    writes what it measured, marked interrupted or failed, and then re-raises."""
    check(scenario, options)
    ts = options.time_scale
    clock = MonotonicClock()
    timeline = Timeline(
        scenario.name,
        options.seed,
        ts,
        settings={
            "description": scenario.description,
            "faults": [asdict(step) for step in scenario.faults],
            "bursts": [asdict(burst) for burst in scenario.bursts],
            "plane": {k: v for k, v in asdict(options.plane).items() if not isinstance(v, dict)},
            "objects": options.plane.objects,
            "endpoints": list(options.endpoints) or "local cluster behind proxies",
            "etcd_args": list(scenario.etcd_args),
            "notes": fidelity.notes(ts),
        },
    )
    recorder = Recorder(timeline, clock)
    try:
        await _measure(scenario, options, clock, recorder, progress)
    except asyncio.CancelledError as stop:
        # The signal's name, as the command line cancelled the run with it.
        reason = f"stopped by {stop.args[0]}" if stop.args else "cancelled"
        _write(recorder.timeline, options, Outcome("interrupted", reason), progress)
        raise
    except Exception as error:
        _write(recorder.timeline, options, Outcome("failed", str(error)), progress)
        raise
    return _write(recorder.timeline, options, Outcome(), progress)


def _write(
    timeline: Timeline, options: RunOptions, outcome: Outcome, progress: Progress
) -> tuple[dict[str, Any], ReportPaths]:
    report, paths = write_report(timeline, options.out, outcome)
    progress(summary(report))
    progress(f"report: {paths.html}")
    return report, paths


async def _measure(
    scenario: Scenario,
    options: RunOptions,
    clock: MonotonicClock,
    recorder: Recorder,
    progress: Progress,
) -> None:
    """Start everything, warm up, inject the faults, stop everything."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            await _start_and_inject(scenario, options, clock, recorder, progress, stack)
            # Measured to the end: a signal now would stop nothing but the cleanup,
            # and the report says what was measured, all of it.
            stopping.finishing("the run is over, finishing its report")
        finally:
            # Before anything stops: shutting down is not part of the measurement.
            recorder.finish()


async def _start_and_inject(
    scenario: Scenario,
    options: RunOptions,
    clock: MonotonicClock,
    recorder: Recorder,
    progress: Progress,
    stack: contextlib.AsyncExitStack,
) -> None:
    ts = options.time_scale
    plane_config = replace(options.plane, seed=options.seed).scaled(ts)
    if options.endpoints:
        endpoints: Sequence[str] = options.endpoints
        truth: Sequence[str] | None = None
        driver: ScenarioFaults | None = None
        cluster: LocalCluster | None = None
        if options.proxy_control:
            ids = await member_ids(endpoints)
            if ids is None and any(s.kind.startswith("partition") for s in scenario.faults):
                recorder.timeline.settings["notes"].append(PARTIAL_PARTITION)
            driver = ScenarioFaults(ControlFaults(options.proxy_control), ts, member_ids=ids)
        progress(f"using the cluster at {', '.join(endpoints)}")
    elif options.network == "kernel":
        settings = recorder.timeline.settings
        flags = server_flags(ts, scenario.etcd_args)
        cluster, endpoints, faults_made = await kernel.start(
            stack, MEMBERS, flags, ts, options.warmup_timeout, settings, progress
        )
        truth = cluster.endpoints
        driver = ScenarioFaults(faults_made, ts, cluster)
        member_sampler = asyncio.create_task(
            _sample_members(cluster, recorder, plane_config.sample_period)
        )
        stack.callback(member_sampler.cancel)
    else:
        flags = server_flags(ts, scenario.etcd_args)
        cluster = LocalCluster(MEMBERS, flags=flags, etcd=options.etcd)
        # Killed at the end: the measurement is over and the data is deleted.
        stack.callback(cluster.close, graceful=False)
        proxies = ProxyServer(seed=options.seed)
        stack.push_async_callback(proxies.close)
        links: dict[tuple[int, str], ProxyLink] = {}
        for member in cluster.members:
            links[(member.index, "client")] = await _add_link(
                proxies, cluster, f"etcd-{member.index}-client", (member.host, member.client_port)
            )
            peer = await _add_link(
                proxies,
                cluster,
                f"etcd-{member.index}-peer",
                (member.host, member.peer_port),
                http2=False,
                # etcd's own timer, which no time scale reaches.
                write_deadline=fidelity.PEER_WRITE_DEADLINE,
            )
            links[(member.index, "peer")] = peer
            member.advertise_peer_url = f"http://{peer.address[0]}:{peer.address[1]}"
        progress(f"starting {MEMBERS} etcd members behind fault proxies ...")
        await cluster.astart(timeout=options.warmup_timeout)
        endpoints = [
            f"{links[(i, 'client')].address[0]}:{links[(i, 'client')].address[1]}"
            for i in range(MEMBERS)
        ]
        truth = cluster.endpoints
        driver = ScenarioFaults(LinkFaults(proxies.links, ts), ts, cluster)
        member_sampler = asyncio.create_task(
            _sample_members(cluster, recorder, plane_config.sample_period)
        )
        stack.callback(member_sampler.cancel)
    # Requests name the endpoint that served them; etcd-<i> is the i-th (the report
    # tells a faulted member's requests by it).
    recorder.timeline.settings["member_endpoints"] = list(endpoints)
    oracle = goclients.oracle_binary() if options.clients == "go" else None
    plane = await components.start(
        stack, oracle, endpoints, truth, clock, recorder, plane_config, options, progress
    )
    await _warm_up(plane, options.warmup_timeout)
    origin = recorder.now()
    disconnects = [] if cluster is None else await _counters(cluster, PEER_DISCONNECTS)
    duration = ts.scaled(options.duration or scenario.duration)
    progress(
        f"warm: faults start now; the run lasts {options.duration or scenario.duration:g} s "
        f"of scenario time ({duration:.0f} s at time scale {ts:g})"
    )
    faults = [
        asyncio.create_task(_fault(step, driver, recorder, origin, ts, progress))
        for step in scenario.faults
        if driver is not None and ts.scaled(step.at) < duration
    ]
    bursts = [
        asyncio.create_task(
            _burst(burst, truth or endpoints, cluster, recorder, origin, ts, progress)
        )
        for burst in scenario.bursts
        if ts.scaled(burst.at) < duration
    ]
    outcomes: list[BaseException | None] = []
    stop_churn = asyncio.create_task(_stop_churn(plane, faults))
    try:
        await _progress(recorder, plane, faults, origin, duration, progress)
    finally:
        # A fault still on when the run ends is healed (and recorded) now, and a
        # burst still writing stops.
        for task in [*faults, *bursts, stop_churn]:
            task.cancel()
        outcomes = await asyncio.gather(*faults, *bursts, stop_churn, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    if cluster is not None:
        # Whether the leader had to send a member a snapshot (a member back from a
        # long cut, behind the log the leader kept), and how often each member's
        # peers went inactive since the warm-up: etcd's own counters.
        received = await _counters(cluster, "etcd_network_snapshot_receive_success")
        ended = await _counters(cluster, PEER_DISCONNECTS)
        for member, snapshots, before, after in zip(
            cluster.members, received, disconnects, ended, strict=True
        ):
            if snapshots is not None:
                recorder.gauge(f"snapshots_received/{member.name}", snapshots)
            if after is not None:
                # Lower than at the warm-up: the member was restarted (a kill), and
                # the new process counted from its start.
                since = after if before is None or after < before else after - before
                recorder.gauge(f"peer_disconnects/{member.name}", since)
    failures = plane.failed_tasks()
    if failures:
        raise RuntimeError(f"a control-plane job failed: {failures[0]!r}")


# etcd counts a peer going inactive: a send or a read on one of raft's streams or
# pipelines to it failed (rafthttp's peerStatus). Under the kernel's loss that is
# how a stalled stream ends: the writer's 5 s write deadline fires once the
# socket's send buffer is full, and the stream is dialled again. Through the
# proxy, whose sockets buffer megabytes, the loss model's send buffer and the
# peer links' write deadline stand in for them (etcdlab.proxy.blocking;
# docs/BENCHMARKS.md, "Scenario fidelity").
PEER_DISCONNECTS = "etcd_network_disconnected_peers_total"


async def _counters(cluster: LocalCluster, name: str) -> list[float | None]:
    """Each member's Prometheus counter ``name``; None for one that does not answer."""
    return [await asyncio.to_thread(cluster.counter, m.index, name) for m in cluster.members]


async def _add_link(
    proxies: ProxyServer,
    cluster: LocalCluster,
    name: str,
    upstream: tuple[str, int],
    *,
    http2: bool = True,
    write_deadline: float | None = None,
) -> ProxyLink:
    """A link on a port no member is about to listen on: the members' ports were
    free when the cluster chose them, so the OS may hand one to a link, and that
    member then cannot start (seen: every /health of etcd-1 answered by a link)."""
    ports = {p for m in cluster.members for p in (m.client_port, m.peer_port)}
    while (
        link := await proxies.add_link(name, upstream, http2=http2, write_deadline=write_deadline)
    ).address[1] in ports:
        await proxies.remove_link(name)
    return link


async def _sample_members(cluster: LocalCluster, recorder: Recorder, period: float) -> None:
    """Each member's own view (``/health``: a leader and quorum), past the proxies.

    Every ``period`` (the plane's scaled sample period), the members at once, each
    given two periods to answer: both scale, so a member's time to recover after
    a heal reads the same at every time scale.
    """

    def ask(index: int) -> tuple[bool, tuple[int | None, int] | None]:
        return cluster.member_healthy(index, 2 * period), cluster.raft_view(index, 2 * period)

    async def probe(index: int) -> tuple[bool, tuple[int | None, int] | None]:
        member = cluster.members[index]
        if not member.running or member.paused:
            return False, None
        return await asyncio.to_thread(ask, index)

    while True:
        started = recorder.now()
        answers = await asyncio.gather(*(probe(m.index) for m in cluster.members))
        for member, (healthy, view) in zip(cluster.members, answers, strict=True):
            recorder.health(member.name, healthy)
            if view is not None:
                # Whom each member follows, and its term: elections and where
                # leadership went (report.incidents).
                leader, term = view
                recorder.gauge(f"raft_leader/{member.name}", -1 if leader is None else leader)
                recorder.gauge(f"raft_term/{member.name}", term)
        await asyncio.sleep(max(0.0, period - (recorder.now() - started)))


async def _stop_churn(plane: components.Components, faults: list[asyncio.Task[None]]) -> None:
    if faults:
        await asyncio.wait(faults)
        plane.churning = False


async def _warm_up(plane: components.Components, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (plane.converged() and KCM_LEASE in plane.leaders()):
        if loop.time() > deadline:
            raise RuntimeError(
                f"the control plane did not converge within {timeout:g} s "
                f"(progress {plane.progress}, leaders {sorted(plane.leaders())})"
            )
        failures = plane.failed_tasks()
        if failures:
            raise RuntimeError(f"a control-plane job failed: {failures[0]!r}")
        await asyncio.sleep(0.1)


async def _fault(
    step: FaultStep,
    driver: ScenarioFaults,
    recorder: Recorder,
    origin: float,
    ts: TimeScale,
    progress: Progress,
) -> None:
    await asyncio.sleep(max(0.0, origin + ts.scaled(step.at) - recorder.now()))
    members, leader = await driver.members(step)
    target = ",".join(f"etcd-{m}" for m in members)
    # Whether the faulted member leads raft decides how far the fault reaches (every
    # write crosses the leader's links), and elections pick the leader, not the seed.
    detail = _detail(step) + ("" if leader is None else f"; raft leader etcd-{leader}")
    heal = await driver.apply(step, members)
    start = recorder.now()
    progress(f"fault on: {step.kind} of {target} ({detail})")
    try:
        await asyncio.sleep(ts.scaled(step.duration))
    finally:
        # The window ends when the heal begins: restarting a killed member takes
        # real seconds that no time scale shrinks, and they belong to its
        # recovery (the member samples show it), not to the fault.
        recorder.fault(start, KINDS[step.kind], target, detail)
        await heal()
        progress(f"fault healed: {target}")


# Keys a burst overwrites in turn: its writes are raft entries and revisions, not a
# growing keyspace (a snapshot sent to a member carries the whole database).
BURST_KEYS = 100
BURST_PREFIX = b"/etcdlab/burst/"
# Writes of a burst in flight at once, at most: a rate the cluster cannot keep up
# with makes the burst last longer, not the writes pile up.
BURST_WINDOW = 64


async def _burst(
    burst: WriteBurst,
    endpoints: Sequence[str],
    cluster: LocalCluster | None,
    recorder: Recorder,
    origin: float,
    ts: TimeScale,
    progress: Progress,
) -> None:
    """``burst.count`` writes committed, one due every ``1 / rate`` (scaled) from
    ``at``, at most :data:`BURST_WINDOW` in flight; a write that fails is made
    again, as the next one due. A local cluster's writes go to the raft leader
    of when the burst begins (a member that has lost its leader, as one cut off
    has, holds a write until etcd's request timeout; the others forward it)."""
    await asyncio.sleep(max(0.0, origin + ts.scaled(burst.at) - recorder.now()))
    leader = None if cluster is None else await asyncio.to_thread(cluster.leader)
    if cluster is not None and leader is not None:
        endpoints = [cluster.endpoints[leader]]
    every = ts.scaled(1 / burst.rate)
    committed = failed = made = 0
    value = b"x" * 64
    flying: set[asyncio.Task[None]] = set()

    async def write(client: EtcdClient, key: bytes) -> None:
        nonlocal committed, failed
        try:
            await client.put(key, value, idempotent=True, timeout=ts.scaled(5.0))
        except EtcdError:
            failed += 1
        else:
            committed += 1

    async with EtcdClient(endpoints, name="burst") as client:
        start = recorder.now()
        try:
            while committed < burst.count:
                while (
                    len(flying) < BURST_WINDOW
                    and committed + len(flying) < burst.count
                    and start + made * every <= recorder.now()
                ):
                    task = asyncio.create_task(
                        write(client, BURST_PREFIX + b"%d" % (made % BURST_KEYS))
                    )
                    flying.add(task)
                    task.add_done_callback(flying.discard)
                    made += 1
                if len(flying) < BURST_WINDOW and committed + len(flying) < burst.count:
                    # Pacing, not waiting for anything: the next write's due time.
                    await asyncio.sleep(max(0.0, start + made * every - recorder.now()))
                else:
                    await asyncio.wait(set(flying), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in flying:
                task.cancel()
            await asyncio.gather(*flying, return_exceptions=True)
    seconds = recorder.timeline.unscaled(recorder.now() - start)
    progress(
        f"burst: {committed} writes committed in {seconds:.1f} s ({failed} failed, made again)"
    )


def _detail(step: FaultStep) -> str:
    """The fault's settings in words, for the progress line and the report."""
    if step.kind == "kill":
        return "process killed, restarted at the heal"
    if step.kind == "pause":
        return "process stopped (SIGSTOP), resumed at the heal"
    if step.kind == "loss":
        return f"{step.links} links, p={step.probability:g}"
    if step.kind == "flapping":
        return f"{step.links} links down and up every {step.period:g} s"
    if step.kind == "mtu":
        return f"{step.links} links drop IP packets above {step.mtu} bytes"
    if step.kind == "latency":
        jitter = f" +/- {step.jitter * 1000:g}" if step.jitter else ""
        return f"{step.links} links delayed {step.latency * 1000:g}{jitter} ms each way"
    return f"{step.links} links blackholed"


_TIMER_RESOLUTION = 0.002


async def _progress(
    recorder: Recorder,
    plane: components.Components,
    faults: list[asyncio.Task[None]],
    origin: float,
    duration: float,
    progress: Progress,
) -> None:
    tick = max(duration / 10, 0.5)
    end = origin + duration
    timeline = recorder.timeline
    seen = len(timeline.requests)
    # uvloop's timers have millisecond resolution and may wake a hair early:
    # a remainder under that is the end, not another (near-zero) tick.
    while (left := end - recorder.now()) > _TIMER_RESOLUTION:
        await asyncio.sleep(min(tick, left))
        failures = plane.failed_tasks()
        if failures:
            raise RuntimeError(f"a control-plane job failed: {failures[0]!r}")
        for task in faults:
            if task.done() and not task.cancelled() and task.exception() is not None:
                # A fault that could not be applied ends the run now, not at its end.
                await task
        # The requests since the last line: what the fault is doing now.
        recent, seen = timeline.requests[seen:], len(timeline.requests)
        progress(
            f"  t+{timeline.unscaled(recorder.now() - origin):6.1f} s  "
            f"{_requests_words(recent)}  {_members_words(timeline.health)}"
            f"leaders {len(plane.leaders())}  workloads "
            + ", ".join(f"{kind} {d}/{t}" for kind, (d, t) in plane.progress.items())
        )


def _requests_words(requests: Sequence[Request]) -> str:
    """Error rate and p99 of the requests that went to etcd (the cache never fails)."""
    sent = [r for r in requests if r.source == "etcd"]
    if not sent:
        return "no etcd requests"
    failed = sum(not r.ok for r in sent)
    p99 = quantile((r.latency for r in sent), 0.99) or 0.0
    return f"errors {failed / len(sent):4.0%} of {len(sent):<5d} p99 {p99 * 1000:7.1f} ms"


def _members_words(health: Sequence[Health]) -> str:
    """How many members answer ``/health`` (a leader and quorum) at their last sample."""
    last: dict[str, bool] = {}
    for sample in health:
        if sample.component.startswith("etcd-"):
            last[sample.component] = sample.healthy
    if not last:
        return ""
    return f"members healthy {sum(last.values())}/{len(last)}  "

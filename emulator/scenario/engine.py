"""The scenario engine: a cluster behind fault proxies, the control plane, the faults.

Locally it starts a 3-member :class:`~etcdlab.cluster.local.LocalCluster` with a
proxy link in front of each member's client port and one in front of its peer
port (each member advertises its peer proxy, so raft traffic dialled to it
crosses it). Against an existing cluster (``endpoints``, e.g. compose), link
faults go through the proxies' control API (``proxy_control``) and process
faults (kill, pause) are not available.

Times: a scenario's times are real seconds, multiplied by ``time_scale``. Faults
start counting after the warm-up (the control plane elected its leaders and the
workloads converged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from etcdlab.client.errors import EtcdError
from etcdlab.client.etcd import EtcdClient
from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common.clock import MonotonicClock
from etcdlab.common.timeline import FaultKind, Recorder, Timeline
from etcdlab.controlplane.plane import KCM_LEASE, ControlPlane, PlaneConfig
from etcdlab.proxy.faults import Blackhole, Fault, Loss
from etcdlab.proxy.link import ProxyLink
from etcdlab.proxy.server import ProxyServer
from etcdlab.report.render import ReportPaths, summary, write_report
from etcdlab.scenario import fidelity
from etcdlab.scenario.spec import FaultStep, Scenario

MEMBERS = 3
Heal = Callable[[], Awaitable[None]]
KINDS = {
    "loss": FaultKind.LOSS,
    "partition-minority": FaultKind.PARTITION_MINORITY,
    "partition-majority": FaultKind.PARTITION_MAJORITY,
    "kill": FaultKind.KILL,
    "pause": FaultKind.PAUSE,
    "flapping": FaultKind.FLAPPING,
}

PARTIAL_PARTITION = (
    "the members' IDs could not be read, so partitions blackhole each member's client "
    "link and the peer connections dialled to it, but not the connections it dials "
    "to its peers: the partition is partial"
)


@dataclass(frozen=True)
class RunOptions:
    time_scale: float = 1.0
    seed: int = 0
    out: Path = Path("etcdlab-report")
    duration: float | None = None  # real seconds after the warm-up; None: the scenario's
    endpoints: tuple[str, ...] = ()  # an existing cluster (through its proxies)
    proxy_control: str | None = None  # http://host:port of the proxies' control API
    warmup_timeout: float = 120.0  # real seconds, not scaled: cluster start is not
    plane: PlaneConfig = field(default_factory=PlaneConfig)

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError("time_scale must be positive")
        fidelity.check(self.time_scale)
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.proxy_control and not self.endpoints:
            raise ValueError("proxy_control needs endpoints (the proxies' client addresses)")
        if self.proxy_control and not self.proxy_control.startswith(("http://", "https://")):
            raise ValueError(f"proxy_control must be an http:// URL, not {self.proxy_control!r}")


class FaultDriver(Protocol):
    def leader(self) -> int | None: ...

    async def apply(self, step: FaultStep, members: list[int]) -> Heal: ...


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


class LocalFaults:
    """Faults on a local cluster: proxy links for the network, signals for processes."""

    def __init__(
        self, cluster: LocalCluster, links: dict[tuple[int, str], ProxyLink], time_scale: float
    ) -> None:
        self.cluster = cluster
        self.links = links
        self.time_scale = time_scale

    def leader(self) -> int | None:
        return self.cluster.leader()

    async def apply(self, step: FaultStep, members: list[int]) -> Heal:
        if step.kind == "kill":
            for member in members:
                self.cluster.kill(member)

            async def restart() -> None:
                for member in members:
                    await asyncio.to_thread(self.cluster.restart, member)

            return restart
        if step.kind == "pause":
            for member in members:
                self.cluster.pause(member)

            async def resume() -> None:
                for member in members:
                    self.cluster.resume(member)

            return resume
        ids = [f"{m.member_id:x}" for m in self.cluster.members]
        placements = [
            (self.links[(member, kind)], name, dialer)
            for member, kind, name, dialer in placements_of(step, members, ids)
        ]
        if step.kind == "flapping":
            return self._flap(placements, step.period * self.time_scale)
        added = [
            (link, link.add(_make_fault(step, name, dialer))) for link, name, dialer in placements
        ]

        async def heal() -> None:
            for link, each in added:
                link.remove(each)

        return heal

    def _flap(self, placements: list[tuple[ProxyLink, str, str | None]], period: float) -> Heal:
        async def flap() -> None:
            while True:
                added = [
                    (link, link.add(Blackhole(name=name, dialer=dialer)))
                    for link, name, dialer in placements
                ]
                try:
                    await asyncio.sleep(period / 2)
                finally:
                    for link, fault in added:
                        link.remove(fault)
                await asyncio.sleep(period / 2)

        task = asyncio.create_task(flap())

        async def heal() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return heal


def _make_fault(step: FaultStep, name: str, dialer: str | None) -> Fault:
    if step.kind == "loss":
        return Loss(step.probability, name=name, dialer=dialer)
    return Blackhole(name=name, dialer=dialer)


class RemoteFaults:
    """Link faults through the proxies' Toxiproxy-shaped control API.

    The proxies are named ``etcd-<i>-client`` and ``etcd-<i>-peer`` (compose.yaml).
    """

    def __init__(self, control: str, member_ids: list[str] | None = None) -> None:
        self.control = control.rstrip("/")
        self.member_ids = member_ids
        self._count = 0

    def leader(self) -> int | None:
        return None

    async def apply(self, step: FaultStep, members: list[int]) -> Heal:
        if step.kind in ("kill", "pause", "flapping"):
            raise ValueError(f"a {step.kind} fault needs a local cluster (no --endpoints)")
        self._count += 1
        name = f"etcdlab-{self._count}"
        if step.kind == "loss":
            toxic: dict[str, Any] = {
                "type": "loss",
                "attributes": {"probability": step.probability},
            }
        else:
            toxic = {"type": "blackhole", "attributes": {}}
        added: list[tuple[str, str]] = []
        for member, kind, what, dialer in placements_of(step, members, self.member_ids):
            proxy, toxic_name = f"etcd-{member}-{kind}", f"{name}-{what}"
            attributes = {**toxic["attributes"], **({"dialer": dialer} if dialer else {})}
            body = {"name": toxic_name, "stream": "both", **toxic, "attributes": attributes}
            await asyncio.to_thread(self._call, "POST", f"/proxies/{proxy}/toxics", body)
            added.append((proxy, toxic_name))

        async def heal() -> None:
            for proxy, toxic_name in added:
                await asyncio.to_thread(
                    self._call, "DELETE", f"/proxies/{proxy}/toxics/{toxic_name}"
                )

        return heal

    def _call(self, method: str, path: str, body: Any = None) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.control + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                reply.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"proxy control {method} {path}: {error.code} {error.read().decode()[:200]}"
            ) from None
        except OSError as error:
            raise RuntimeError(f"proxy control {self.control} unreachable: {error}") from None


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


def resolve(target: str, leader: int | None) -> list[int]:
    if target in ("leader", "follower"):
        if leader is None:
            raise ValueError(f"target {target!r} needs a local cluster with a leader")
        if target == "leader":
            return [leader]
        return [(leader + 1) % MEMBERS]
    members = sorted({int(part) for part in target.split(",")})
    if any(m >= MEMBERS for m in members):
        raise ValueError(f"target {target!r}: members are 0..{MEMBERS - 1}")
    return members


def server_flags(time_scale: float) -> ServerFlags:
    flags = ServerFlags.scaled(time_scale)
    # Progress notifications keep the watch cache fresh while nothing changes.
    interval = max(0.1, 2.0 * time_scale)
    return replace(
        flags,
        extra_args=(
            *flags.extra_args,
            f"--experimental-watch-progress-notify-interval={round(interval * 1000)}ms",
        ),
    )


Progress = Callable[[str], None]


async def run(
    scenario: Scenario, options: RunOptions, progress: Progress = print
) -> tuple[dict[str, Any], ReportPaths]:
    ts = options.time_scale
    plane_config = replace(options.plane, seed=options.seed).scaled(ts)
    clock = MonotonicClock()
    timeline = Timeline(
        scenario.name,
        options.seed,
        ts,
        settings={
            "description": scenario.description,
            "faults": [asdict(step) for step in scenario.faults],
            "plane": {k: v for k, v in asdict(options.plane).items() if not isinstance(v, dict)},
            "objects": options.plane.objects,
            "endpoints": list(options.endpoints) or "local cluster behind proxies",
            "notes": fidelity.notes(ts),
        },
    )
    recorder = Recorder(timeline, clock)
    async with contextlib.AsyncExitStack() as stack:
        if options.endpoints:
            endpoints: Sequence[str] = options.endpoints
            truth: Sequence[str] | None = None
            driver: FaultDriver | None = None
            if options.proxy_control:
                ids = await member_ids(endpoints)
                if ids is None and any(s.kind.startswith("partition") for s in scenario.faults):
                    timeline.settings["notes"].append(PARTIAL_PARTITION)
                driver = RemoteFaults(options.proxy_control, ids)
            progress(f"using the cluster at {', '.join(endpoints)}")
        else:
            cluster = LocalCluster(MEMBERS, flags=server_flags(ts))
            stack.callback(cluster.close)
            proxies = ProxyServer(seed=options.seed, time_scale=ts)
            stack.push_async_callback(proxies.close)
            links: dict[tuple[int, str], ProxyLink] = {}
            for member in cluster.members:
                links[(member.index, "client")] = await proxies.add_link(
                    f"etcd-{member.index}-client", (member.host, member.client_port)
                )
                peer = await proxies.add_link(
                    f"etcd-{member.index}-peer", (member.host, member.peer_port), http2=False
                )
                links[(member.index, "peer")] = peer
                member.advertise_peer_url = f"http://{peer.address[0]}:{peer.address[1]}"
            progress("starting 3 etcd members behind fault proxies ...")
            await cluster.astart(timeout=options.warmup_timeout)
            endpoints = [
                f"{links[(i, 'client')].address[0]}:{links[(i, 'client')].address[1]}"
                for i in range(MEMBERS)
            ]
            truth = cluster.endpoints
            driver = LocalFaults(cluster, links, ts)
            member_sampler = asyncio.create_task(
                _sample_members(cluster, recorder, plane_config.sample_period)
            )
            stack.callback(member_sampler.cancel)
        if scenario.faults and driver is None:
            raise ValueError("this scenario injects faults: give --proxy-control with --endpoints")
        plane = ControlPlane(endpoints, clock, recorder, plane_config, truth)
        stack.push_async_callback(plane.close)
        await plane.seed_objects()
        plane.start()
        progress(
            f"control plane: {plane_config.apiservers} apiservers, {len(plane.components)} "
            f"leader-elected candidates, {options.plane.objects} workload objects; warming up"
        )
        await _warm_up(plane, options.warmup_timeout)
        origin = recorder.now()
        duration = (options.duration or scenario.duration) * ts
        progress(f"warm: faults start now; the run lasts {duration:.0f} s")
        assert driver is not None or not scenario.faults
        faults = [
            asyncio.create_task(_fault(step, driver, recorder, origin, ts, progress))
            for step in scenario.faults
            if driver is not None and step.at * ts < duration
        ]
        outcomes: list[BaseException | None] = []
        stop_churn = asyncio.create_task(_stop_churn(plane, faults))
        try:
            await _progress(recorder, plane, faults, origin, duration, progress)
        finally:
            # A fault still on when the run ends is healed (and recorded) now.
            for task in [*faults, stop_churn]:
                task.cancel()
            outcomes = await asyncio.gather(*faults, stop_churn, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        failures = plane.failed_tasks()
        if failures:
            raise RuntimeError(f"a control-plane job failed: {failures[0]!r}")
        timeline = recorder.finish()
    report, paths = write_report(timeline, options.out)
    progress(summary(report))
    progress(f"report: {paths.html}")
    return report, paths


async def _sample_members(cluster: LocalCluster, recorder: Recorder, period: float) -> None:
    """Each member's own view (``/health``: a leader and quorum), past the proxies.

    Every ``period`` (the plane's scaled sample period), the members at once, each
    given two periods to answer: both scale, so a member's time to recover after
    a heal reads the same at every time scale.
    """

    async def probe(index: int) -> bool:
        member = cluster.members[index]
        if not member.running or member.paused:
            return False
        return await asyncio.to_thread(cluster.member_healthy, index, 2 * period)

    while True:
        started = recorder.now()
        verdicts = await asyncio.gather(*(probe(m.index) for m in cluster.members))
        for member, healthy in zip(cluster.members, verdicts, strict=True):
            recorder.health(member.name, healthy)
        await asyncio.sleep(max(0.0, period - (recorder.now() - started)))


async def _stop_churn(plane: ControlPlane, faults: list[asyncio.Task[None]]) -> None:
    if faults:
        await asyncio.wait(faults)
        plane.churning = False


async def _warm_up(plane: ControlPlane, timeout: float) -> None:
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
    driver: FaultDriver,
    recorder: Recorder,
    origin: float,
    ts: float,
    progress: Progress,
) -> None:
    await asyncio.sleep(max(0.0, origin + step.at * ts - recorder.now()))
    members = resolve(step.target, await asyncio.to_thread(driver.leader))
    target = ",".join(f"etcd-{m}" for m in members)
    detail = f"{step.kind} on {step.links} links" + (
        f", p={step.probability:g}" if step.kind == "loss" else ""
    )
    heal = await driver.apply(step, members)
    start = recorder.now()
    progress(f"fault on: {detail} of {target}")
    try:
        await asyncio.sleep(step.duration * ts)
    finally:
        # The window ends when the heal begins: restarting a killed member takes
        # real seconds that no time scale shrinks, and they belong to its
        # recovery (the member samples show it), not to the fault.
        recorder.fault(start, KINDS[step.kind], target, detail)
        await heal()
        progress(f"fault healed: {target}")


_TIMER_RESOLUTION = 0.002


async def _progress(
    recorder: Recorder,
    plane: ControlPlane,
    faults: list[asyncio.Task[None]],
    origin: float,
    duration: float,
    progress: Progress,
) -> None:
    tick = max(duration / 10, 0.5)
    end = origin + duration
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
        done = ", ".join(f"{k} {d}/{t}" for k, (d, t) in plane.progress.items())
        leaders = plane.leaders()
        progress(f"  t+{recorder.now() - origin:6.1f} s  leaders {len(leaders)}  workloads {done}")

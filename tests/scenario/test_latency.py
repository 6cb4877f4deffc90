"""The ``latency`` fault step: its keys checked with their path, the engine putting the
proxy's latency on every link of the target, and a short run where it shows."""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.plane import PlaneConfig
from etcdlab.proxy.driver import LinkFaults
from etcdlab.proxy.faults.latency import Latency
from etcdlab.scenario import engine
from etcdlab.scenario.spec import FaultStep, FieldError, Scenario, from_toml

HEAD = 'name = "s"\nduration = 100\n[[fault]]\nat = 10\nduration = 20\n'


def latency_fault(extra: str, kind: str = "latency") -> str:
    return f'{HEAD}kind = "{kind}"\ntarget = "leader"\n{extra}'


def test_a_latency_step_reads_durations_with_a_unit() -> None:
    (step,) = from_toml(latency_fault('latency = "50ms"\njitter = "10ms"\n')).faults
    assert (step.kind, step.latency, step.jitter, step.links) == ("latency", 0.05, 0.01, "all")
    (step,) = from_toml(latency_fault('latency = "0.2s"\njitter = 0\n')).faults
    assert (step.latency, step.jitter) == (0.2, 0.0)
    (step,) = from_toml(latency_fault('latency = "1.5s"\nlinks = "peer"\n')).faults
    assert (step.latency, step.links) == (1.5, "peer")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (latency_fault(""), 'fault[0].latency: a latency fault needs one above 0, like "50ms"'),
        (latency_fault("latency = 0\n"), "fault[0].latency: a latency fault needs one above 0"),
        (latency_fault('latency = "0ms"\n'), "fault[0].latency: a latency fault needs one above"),
        # The proxy's TOML reads 50 as milliseconds, this file's times are seconds.
        (
            latency_fault("latency = 50\n"),
            'fault[0].latency: give a unit, like "50ms" or "50s": a bare number is seconds',
        ),
        (latency_fault('latency = "-5ms"\n'), "fault[0].latency: must not be negative"),
        (
            latency_fault('latency = "50"\n'),
            "fault[0].latency: a duration needs a unit (ms, s or m)",
        ),
        (latency_fault('latency = "fast"\n'), "fault[0].latency: not a duration (like 50ms, 1.5s)"),
        (latency_fault("latency = true\n"), "fault[0].latency: must be a number, not the boolean"),
        (
            latency_fault('latency = "50ms"\njitter = "60ms"\n'),
            "fault[0].jitter: must not exceed the latency (0.05 s), not 0.06 s",
        ),
        (
            latency_fault('latency = "50ms"\njitter = 0.01\n'),
            'fault[0].jitter: give a unit, like "0.01ms" or "0.01s"',
        ),
        (latency_fault('latency = "50ms"\n', "loss"), "fault[0].latency: a loss fault has no "),
        (latency_fault('jitter = "5ms"\n', "mtu"), "fault[0].jitter: a mtu fault has no jitter"),
        (latency_fault('latency = "5ms"\nprobability = 0.2\n'), "fault[0].probability: a latency"),
    ],
)
def test_bad_latency_keys_are_named_by_their_path(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=r"^scenario: ") as error:
        from_toml(text)
    assert str(error.value).startswith(f"scenario: {problem}"), str(error.value)


def test_a_step_built_in_python_is_checked_too() -> None:
    with pytest.raises(FieldError, match=r"^latency: must not be negative, not -0\.1 s"):
        FaultStep(0, 1, "latency", latency=-0.1)
    with pytest.raises(FieldError, match=r"^jitter: must not be negative"):
        FaultStep(0, 1, "latency", latency=0.1, jitter=-0.01)


def test_the_step_puts_the_proxys_latency_on_every_link_of_the_target() -> None:
    step = FaultStep(0, 1, "latency", "1", latency=0.05, jitter=0.01)
    fault = engine.link_fault(step, "s1-latency-1", "8e9e05c52164694d")
    assert isinstance(fault, Latency)
    assert (fault.latency, fault.jitter, fault.dialer) == (0.05, 0.01, "8e9e05c52164694d")
    # Scaled once, where the driver applies it, like every other step.
    scaled = fault.scaled(TimeScale(0.1))
    assert (scaled.latency, scaled.jitter) == pytest.approx((0.005, 0.001))
    links = {(member, kind) for member, kind, _, _ in engine.placements_of(step, [1], None)}
    assert links == {(1, "client"), (1, "peer")}


def test_the_kernel_network_refuses_what_it_cannot_make_before_starting() -> None:
    for kind in ("latency", "mtu"):
        scenario = Scenario("s", "", 10, (FaultStep(1, 2, kind, "0", latency=0.05),))
        with pytest.raises(FieldError, match=f"^fault\\[0\\].kind: .* not {kind}: use --network"):
            engine.check(scenario, engine.RunOptions(network="kernel"))


class Leaders(engine.ScenarioFaults):
    """A driver whose raft leader moves every time it is asked."""

    asked = 0

    def leader(self) -> int | None:
        self.asked += 1
        return self.asked % 3


async def test_steps_beginning_together_fault_the_same_leader() -> None:
    driver = Leaders(LinkFaults({}, TimeScale(1.0)), TimeScale(1.0))
    loss = FaultStep(0, 5, "loss", "leader", probability=0.3)
    slow = FaultStep(0, 5, "latency", "leader", latency=0.05)
    (lossy, leader), (slowed, _) = await asyncio.gather(driver.members(loss), driver.members(slow))
    assert lossy == slowed == [leader] and driver.asked == 1
    later, _ = await driver.members(FaultStep(1, 4, "latency", "leader", latency=0.05))
    assert later != lossy and driver.asked == 2


SMALL = PlaneConfig(apiservers=2, components=1, nodes=2, deployments=2, statefulsets=1,
                    daemonsets=1, replicas=1, churn_period=5.0)  # fmt: skip
SCALE = 0.1
LATENCY, JITTER = 1.0, 0.2  # real seconds: 100 +/- 20 ms each way at SCALE
EARLY = 0.005  # the event loop's timers may fire a few milliseconds early


async def test_a_latency_step_slows_the_requests_its_member_serves(tmp_path: Path) -> None:
    scenario = Scenario(
        "latency-short",
        "a follower's links slowed",
        25,
        (FaultStep(5, 15, "latency", "follower", latency=LATENCY, jitter=JITTER),),
    )
    options = engine.RunOptions(time_scale=TimeScale(SCALE), seed=3, out=tmp_path, plane=SMALL)
    report, _ = await engine.run(scenario, options, lambda line: None)
    (window,) = report["faults"]
    assert window["kind"] == "latency" and "delayed 1000 +/- 200 ms each way" in window["detail"]
    timeline: dict[str, Any] = json.loads((tmp_path / "timeline.json").read_text())
    endpoints = timeline["settings"]["member_endpoints"]
    slowed = endpoints[int(window["target"].removeprefix("etcd-"))]

    def latencies(member: str, start: float, end: float) -> list[float]:
        return [
            r["latency"]
            for r in timeline["requests"]
            if r["source"] == "etcd" and r["error"] is None and r["member"] == member
            and start <= r["t"] - r["latency"] and r["t"] <= end
        ]  # fmt: skip

    during = latencies(slowed, window["start"], window["end"])
    before = latencies(slowed, 0.0, window["start"])
    others = [
        x for e in endpoints if e != slowed for x in latencies(e, window["start"], window["end"])
    ]
    assert during and before and others
    # Every request the member served crossed its client link both ways: at least
    # twice the shortest delay the jitter draws. A follower's also cross its peer
    # links to the leader and back (seen: about 4 x 100 ms).
    least = 2 * (LATENCY - JITTER) * SCALE
    assert min(during) >= least - EARLY, min(during)
    assert statistics.median(during) - statistics.median(before) >= least - EARLY
    # The other members' links were left alone: some of their requests were quick.
    assert min(others) < least
    assert report["safety"]["overlapping_leaders"] == 0

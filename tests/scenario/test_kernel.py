"""The kernel network: nftables rules per fault, and a short scenario with kernel loss."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from etcdlab.common.timescale import UNSCALED
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.latency import Latency
from etcdlab.proxy.faults.loss import Loss
from etcdlab.scenario import engine, kernel
from tests.conftest import require
from tests.waiting import wait_until


@pytest.fixture
def needs_root() -> None:
    """The kernel network's tools and rights: a skip without them, a failure under CI=true."""
    missing = kernel.unavailable()
    require(None if missing is None else f"kernel network {missing}")


SHORT = """
name = "kernel-short"
duration = 25
[[fault]]
at = 3
duration = 15
kind = "loss"
target = "0"
probability = 0.3
"""


def test_a_loss_is_one_rule_on_the_connections_dialled_to_the_link() -> None:
    text = kernel.rule("127.0.0.11", 2379, None, Loss(0.3, name="s1-loss-0"))
    assert text == (
        "ct original ip daddr 127.0.0.11 ct protocol tcp ct original proto-dst 2379 "
        'counter numgen random mod 1000000 < 300000 counter drop comment "s1-loss-0"'
    )


def test_a_dialer_is_its_mark_and_a_direction_is_the_connections() -> None:
    text = kernel.rule("127.0.0.12", 7001, 0, Loss(0.1, dialer="8e9e05c52164694d"))
    assert "ct mark 1 " in text and "< 100000 " in text and "ct direction" not in text
    upstream = kernel.rule("127.0.0.12", 7001, None, Loss(0.1, direction="upstream"))
    assert "ct direction original " in upstream
    downstream = kernel.rule("127.0.0.12", 7001, None, Blackhole(direction="downstream"))
    assert "ct direction reply " in downstream
    # A blackhole drops every packet: no odds, one counter.
    assert "numgen" not in downstream and downstream.count("counter") == 1


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Latency(latency=0.05), "not latency"),
        (Loss(0.3, method="etcdserverpb.KV/Range"), "method"),
        (Loss(0.3, toxicity=0.5), "toxicity"),
    ],
)
def test_what_the_kernel_cannot_make_is_refused(fault: Loss | Latency, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        kernel.rule("127.0.0.11", 2379, None, fault)


def test_every_member_dialling_is_marked_before_anything_starts() -> None:
    text = kernel.table(3)
    for member in range(3):
        assert f"ct state new meta skgid {4200 + member} ct mark set {member + 1}" in text
    assert "hook output" in text and "hook input" in text


def test_the_kernel_network_never_changes_a_namespace_it_did_not_make() -> None:
    # This process shares its network with others: the loopback and rules stay as they are.
    network = kernel.KernelNetwork(UNSCALED, {})
    with pytest.raises(RuntimeError, match="namespace of its own"):
        network.open(3)


def test_options_refuse_a_kernel_network_on_an_existing_cluster() -> None:
    with pytest.raises(ValueError, match="no endpoints"):
        engine.RunOptions(network="kernel", endpoints=("127.0.0.1:2379",))
    with pytest.raises(ValueError, match="network must be one of"):
        engine.RunOptions(network="tc")


def _namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _in_namespace(inode: int) -> list[int]:
    """Every process still in the network namespace ``inode``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _namespace(int(p)) == inode]


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path, int]:
    """A short kernel-loss run in a child; its report directory and namespace."""
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    out = tmp_path / "out"
    temp = tmp_path / "tmp"
    temp.mkdir()
    child = subprocess.Popen(
        [
            sys.executable, "-m", "etcdlab", "run", str(scenario), "--network", "kernel",
            "--time-scale", "0.2", "--components", "1", "--workloads", "2", "--nodes", "2",
            "--out", str(out), *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip
    ours = _namespace(os.getpid())
    wait_until(lambda: _namespace(child.pid) not in (ours, None), 30, "the run's own namespace")
    inode = _namespace(child.pid)
    assert inode is not None
    return child, out, inode


def _assert_cleaned_up(tmp_path: Path, inode: int) -> None:
    # Nothing left in the namespace: it is gone, and its rules with it.
    wait_until(lambda: not _in_namespace(inode), 10, "every process of the namespace to end")
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.usefixtures("needs_root")
def test_kernel_loss_scenario_drops_packets_and_leaves_nothing(tmp_path: Path) -> None:
    child, out, inode = _start(tmp_path, "--quiet")
    try:
        assert child.wait(timeout=300) == 0
    finally:
        child.kill()
        child.wait()
    report = json.loads((out / "report.json").read_text())
    # Whether the faulted member led raft is on record (elections, not the seed, decide).
    assert "raft leader etcd-" in report["faults"][0]["detail"]
    network = report["settings"]["network"]
    assert (network["mtu"], network["congestion"]) == (1500, "cubic")
    # Every link of member 0, the peer connections it dialled included, lost packets.
    assert sorted(network["faults"]) == [
        "etcd-0-client/s1-loss-0",
        "etcd-0-peer/s1-loss-0",
        "etcd-1-peer/s1-loss-from-0",
        "etcd-2-peer/s1-loss-from-0",
    ]
    assert all(link["dropped"] > 0 for link in network["faults"].values())
    seen, dropped = network["packets"], network["dropped"]
    spread = 5 * math.sqrt(0.3 * 0.7 / seen)
    assert abs(dropped / seen - 0.3) < spread, (dropped, seen)
    _assert_cleaned_up(tmp_path, inode)


@pytest.mark.usefixtures("needs_root")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_kernel_run_leaves_nothing(tmp_path: Path, stop: signal.Signals) -> None:
    child, _, inode = _start(tmp_path)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("fault on"):
                break
        else:
            raise AssertionError("the run ended before its fault began")
        child.send_signal(stop)
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    _assert_cleaned_up(tmp_path, inode)

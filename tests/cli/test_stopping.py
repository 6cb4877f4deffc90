"""SIGINT and SIGTERM stop every long-running command cleanly, a second signal during
the cleanup included: no child process left, no temporary directory, and a run
writes a partial report marked interrupted.

Each command runs as a child process of the test with its own TMPDIR, so "nothing
left" is checkable: the directory is empty afterwards and no process names it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.waiting import wait_until

BOTH = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
STOPPING = "stopping and cleaning up"
SMALL_PLANE = ("--components", "1", "--workloads", "2", "--nodes", "2")


@dataclass
class Child:
    """A command run by the test, its output lines collected as they come."""

    process: subprocess.Popen[str]
    tmp: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float, stream: str = "stdout") -> str:
        lines = self.stdout if stream == "stdout" else self.stderr
        wait_until(
            lambda: any(text in line for line in lines) or self.process.poll() is not None,
            timeout,
            f"{text!r} on {stream}",
        )
        found = [line for line in lines if text in line]
        assert found, f"exited {self.process.returncode} first: {''.join(self.stderr)[-2000:]}"
        return found[0]

    def stop_twice(self, signum: int) -> int:
        """``signum``, and once the command says it is cleaning up, ``signum`` again."""
        self.process.send_signal(signum)
        self.wait_for(STOPPING, 30, "stderr")
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def leftovers(self) -> list[str]:
        """What is left of the command: files in its TMPDIR, processes naming it."""
        left = [str(path) for path in self.tmp.iterdir()]
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
                continue
            if str(self.tmp) in cmdline:
                left.append(f"process {proc.name}: {cmdline[:200]}")
        return left


Launch = Callable[[Sequence[str]], Child]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Launch]:
    children: list[Child] = []

    def launch(argv: Sequence[str]) -> Child:
        tmp = tmp_path / f"tmp{len(children)}"
        tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "etcdlab", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        child = Child(process, tmp)
        for stream, lines in ((process.stdout, child.stdout), (process.stderr, child.stderr)):
            threading.Thread(target=lambda s=stream, out=lines: out.extend(s), daemon=True).start()
        children.append(child)
        return child

    yield launch
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


@BOTH
def test_run_writes_a_partial_report_and_leaves_nothing(
    start: Launch, tmp_path: Path, signum: int
) -> None:
    out = tmp_path / "report"
    run = start(["run", "packet-loss-30", "--time-scale", "0.1", "--out", str(out), *SMALL_PLANE])
    run.wait_for("fault on:", 120)
    assert run.stop_twice(signum) == 128 + signum
    assert run.leftovers() == []
    report = json.loads((out / "report.json").read_text())
    name = signal.Signals(signum).name
    assert report["outcome"] == {"state": "interrupted", "reason": f"stopped by {name}"}
    # What it measured: the fault, still on when the signal came, healed and recorded.
    assert [f["kind"] for f in report["faults"]] == ["loss"]
    assert report["faults"][0]["end"] <= report["duration"]
    assert "INTERRUPTED (stopped by" in (out / "report.html").read_text()
    assert any(line.startswith("  INTERRUPTED") for line in run.stdout)
    assert f"etcdlab run: stopped by {name}\n" in run.stderr
    # Below the faithful scale: said before the run, and the header names the timers.
    assert any(
        line.startswith("etcdlab run: warning: time scale 0.1 is below") for line in run.stderr
    )
    assert any("request timeout" in note for note in report["settings"]["notes"])


@BOTH
def test_cluster_up_stops_every_member_and_deletes_their_data(start: Launch, signum: int) -> None:
    up = start(["cluster", "up", "--members", "3", "--json", "--time-scale", "0.2"])
    pids = json.loads(up.wait_for('"pids"', 60))["pids"]
    assert len(pids) == 3 and len(list(up.tmp.iterdir())) == 1
    assert up.stop_twice(signum) == 0
    assert up.leftovers() == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"etcd {pid} outlived 'cluster up'"


def test_cluster_up_stopped_while_starting_leaves_nothing(start: Launch) -> None:
    up = start(["cluster", "up", "--members", "3", "--json"])
    # The data directory exists as soon as the first member is spawned.
    wait_until(lambda: any(up.tmp.glob("*/etcd-0.log")), 60, "the first member to spawn")
    assert up.stop_twice(signal.SIGTERM) == 0
    assert up.leftovers() == []


@BOTH
def test_proxy_closes_its_ports(start: Launch, signum: int) -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    with upstream:
        target = f"127.0.0.1:{upstream.getsockname()[1]}"
        proxy = start(
            ["proxy", "--listen", "127.0.0.1:0", "--upstream", target, "--control", "127.0.0.1:0"]
        )
        ready = json.loads(proxy.wait_for('"listen"', 30))
        proxy.process.send_signal(signum)
        proxy.process.send_signal(signum)
        assert proxy.process.wait(timeout=30) == 0
    for address in (ready["listen"], ready["control"]):
        host, port = address.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5).close()


def test_election_stops_its_cluster(start: Launch) -> None:
    election = start(["election", "--time-scale", "0.1", "--observe", "60", "--candidates", "3"])
    wait_until(lambda: any(election.tmp.glob("*/etcd-*.log")), 60, "the cluster to start")
    assert election.stop_twice(signal.SIGTERM) == 128 + signal.SIGTERM
    assert election.leftovers() == []


def test_a_retry_sweep_stops_its_cluster(start: Launch, tmp_path: Path) -> None:
    bench = ["bench", "retries", "--faults", "outage", "--duration", "8"]
    sweep = start([*bench, "--out", str(tmp_path / "bench")])
    # A row per finished run: the sweep is under way, on to the next.
    sweep.wait_for("outage", 120, "stderr")
    assert sweep.stop_twice(signal.SIGINT) == 128 + signal.SIGINT
    assert sweep.leftovers() == []
    assert not (tmp_path / "bench").exists(), "a stopped sweep has no results to write"

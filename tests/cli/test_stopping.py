"""SIGINT and SIGTERM stop every long-running command cleanly, a second signal during
the cleanup included: no child process left, no temporary directory, and a run
writes a partial report marked interrupted.

Each command runs as a child process of the test with its own TMPDIR, so "nothing
left" is checkable: the directory is empty afterwards and no process names it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
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


def blocked_writer(fifo: Path) -> int:
    """A reader of ``fifo`` with a one-page pipe, so that whoever writes more than
    a page into it blocks in the middle of the write until the test reads."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, os.sysconf("SC_PAGE_SIZE"))
    return reader


def pipe_full(reader: int) -> bool:
    queued = struct.unpack("i", fcntl.ioctl(reader, termios.FIONREAD, b"\0" * 4))[0]
    return bool(queued >= fcntl.fcntl(reader, fcntl.F_GETPIPE_SZ))


def drain(reader: int, timeout: float) -> bytes:
    """Everything written into the pipe until its writer closes it."""
    chunks: list[bytes] = []
    ended = False

    def read() -> bool:
        nonlocal ended
        try:
            chunk = os.read(reader, 1 << 16)
        except BlockingIOError:
            return False
        chunks.append(chunk)
        ended = not chunk
        return ended

    wait_until(read, timeout, "the writer to close the pipe")
    return b"".join(chunks)


@BOTH
def test_a_signal_while_a_finished_run_writes_its_report_is_ignored(
    start: Launch, tmp_path: Path, signum: int
) -> None:
    # The measurement is over once the report is being written: the report is
    # whole and says completed, and the exit status is a completed run's (0
    # here), which carries the safety verdict (3) a late signal must not hide.
    out = tmp_path / "report"
    out.mkdir()
    os.mkfifo(out / "report.json")
    reader = blocked_writer(out / "report.json")
    scenario = tmp_path / "quiet.toml"
    scenario.write_text("duration = 5\n")
    try:
        run = start(["run", str(scenario), "--time-scale", "0.1", "--out", str(out), *SMALL_PLANE])
        wait_until(lambda: pipe_full(reader) or run.process.poll() is not None, 120, "the report")
        assert run.process.poll() is None, "".join(run.stderr)[-2000:]
        run.process.send_signal(signum)
        written = drain(reader, 60)
    finally:
        os.close(reader)
    assert run.process.wait(timeout=60) == 0, "".join(run.stderr)[-2000:]
    assert json.loads(written)["outcome"] == {"state": "completed", "reason": ""}
    name = signal.Signals(signum).name
    assert f"etcdlab: {name}: the run is over, finishing its report: ignored\n" in run.stderr
    assert not any(STOPPING in line for line in run.stderr)
    assert run.leftovers() == []


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

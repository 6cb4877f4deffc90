"""LocalCluster against real etcd processes: lifecycle, faults, cleanup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from etcdlab.cluster.childproc import first_line
from etcdlab.cluster.local import ClusterError, LocalCluster, ServerFlags, free_tcp_ports
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc
from tests.waiting import wait_until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it holds no sockets, so count it as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def put(endpoint: str, key: bytes, value: bytes, timeout: float = 5.0) -> int:
    with grpc.insecure_channel(endpoint) as channel:
        reply = rpc_pb2_grpc.KVStub(channel).Put(
            rpc_pb2.PutRequest(key=key, value=value), timeout=timeout
        )
        return int(reply.header.revision)


def get(endpoint: str, key: bytes, timeout: float = 5.0) -> bytes | None:
    with grpc.insecure_channel(endpoint) as channel:
        reply = rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=key), timeout=timeout)
        return bytes(reply.kvs[0].value) if reply.kvs else None


def test_cluster_starts_with_one_leader_and_distinct_ports(cluster: LocalCluster) -> None:
    assert len(set(cluster.endpoints)) == 3
    assert cluster.wait_leader() in (0, 1, 2)
    put(cluster.endpoints[0], b"/c/k", b"v")
    assert get(cluster.endpoints[2], b"/c/k") == b"v"


def test_kill_leader_then_restart_rejoins(cluster: LocalCluster) -> None:
    old = cluster.wait_leader()
    # Each member's own view: whom it follows, in which term.
    views = [cluster.raft_view(m) for m in range(3)]
    assert {view[0] for view in views if view} == {old} and None not in views
    term = max(view[1] for view in views if view)
    cluster.kill(old)
    assert not cluster.members[old].running
    assert cluster.raft_view(old, timeout=0.5) is None
    survivor = (old + 1) % 3
    # A member's status gives the term of the last entry it applied: it names
    # the new leader a moment before that leader's first entry reaches it.
    wait_until(
        lambda: (
            (view := cluster.raft_view(survivor)) is not None
            and view[0] not in (None, old)
            and view[1] > term
        ),
        15,
        f"etcd-{survivor} to follow a new leader in a term after {term}",
    )
    put(cluster.endpoints[survivor], b"/c/after-kill", b"1")
    cluster.restart(old)
    assert get(cluster.endpoints[old], b"/c/after-kill") == b"1"


def test_pause_returns_once_every_thread_of_the_member_is_stopped(cluster: LocalCluster) -> None:
    victim = (cluster.wait_leader() + 1) % 3
    process = cluster.members[victim].process
    assert process is not None
    cluster.pause(victim)
    try:
        stats = list(Path(f"/proc/{process.pid}/task").glob("*/stat"))
        states = {stat.read_text().rsplit(")", 1)[1].split()[0] for stat in stats}
        assert stats and states <= {"T", "t"}, states
    finally:
        cluster.resume(victim)


def test_pause_keeps_socket_open_but_silent(cluster: LocalCluster) -> None:
    victim = (cluster.wait_leader() + 1) % 3
    cluster.pause(victim)
    with pytest.raises(grpc.RpcError) as raised:
        put(cluster.endpoints[victim], b"/c/paused", b"x", timeout=0.5)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    cluster.resume(victim)
    wait_until(lambda: cluster.member_healthy(victim), 15, "paused member to recover")
    assert put(cluster.endpoints[victim], b"/c/paused", b"x") > 0


def test_operations_on_wrong_state_fail_clearly(cluster: LocalCluster) -> None:
    with pytest.raises(ClusterError, match="not paused"):
        cluster.resume(0)
    cluster.kill(1)
    with pytest.raises(ClusterError, match="not running"):
        cluster.pause(1)
    with pytest.raises(ClusterError, match="not running"):
        cluster.kill(1)


def test_processes_and_data_dirs_are_gone_after_an_exception() -> None:
    pids: list[int] = []
    local = LocalCluster(3, flags=ServerFlags.scaled(0.2))
    with pytest.raises(RuntimeError, match="boom"), local:
        pids.extend(local.pids())
        local.pause(0)  # paused members must be reaped too
        raise RuntimeError("boom")
    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)
    assert not local.base_dir.exists()


def test_a_member_reaped_before_close_is_not_signalled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once a member is reaped its pid is free, and a busy machine hands it to
    # another process (pid_max 32768): close() must not signal that pid.
    local = LocalCluster(1, flags=ServerFlags.scaled(0.2))
    signalled: list[int] = []
    real_killpg = os.killpg

    def killpg(pgid: int, signum: int) -> None:
        signalled.append(pgid)
        real_killpg(pgid, signum)

    with local:
        (pid,) = local.pids()
        local.kill(0)
        assert not alive(pid)
        monkeypatch.setattr(os, "killpg", killpg)
    assert pid not in signalled
    assert not local.base_dir.exists()


def test_peer_url_can_be_advertised_elsewhere() -> None:
    local = LocalCluster(1)
    local.members[0].advertise_peer_url = "http://127.0.0.1:1"
    with local:
        with grpc.insecure_channel(local.endpoints[0]) as channel:
            members = rpc_pb2_grpc.ClusterStub(channel).MemberList(
                rpc_pb2.MemberListRequest(), timeout=5
            )
        assert list(members.members[0].peerURLs) == ["http://127.0.0.1:1"]


def test_server_flags_validate_and_scale() -> None:
    with pytest.raises(ValueError, match="election_ms"):
        ServerFlags(heartbeat_ms=100, election_ms=200)
    with pytest.raises(ValueError, match="time_scale"):
        ServerFlags.scaled(0)
    scaled = ServerFlags.scaled(0.1)
    assert scaled.heartbeat_ms == 10 and scaled.election_ms == 100
    assert "--grpc-keepalive-min-time=500ms" in scaled.args()


def test_cli_cluster_up_prints_endpoints_and_cleans_up_on_sigint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "etcdlab", "cluster", "up", "--members", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(first_line(process.stdout, 60, "etcdlab cluster up"))
        assert len(info["endpoints"]) == 1
        assert put(info["endpoints"][0], b"/cli", b"ok") > 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        deadline = time.monotonic() + 5
        wait_until(lambda: not alive(info["pids"][0]), deadline - time.monotonic(), "etcd exit")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_bad_input_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etcdlab", "cluster", "up", "--members", "zero"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "not an integer: 'zero'" in result.stderr
    assert "Traceback" not in result.stderr


def test_etcd_dies_with_a_sigkilled_parent() -> None:
    # A SIGKILLed test run gets no cleanup code at all: only the parent-death
    # signal stops its etcd members from leaking.
    script = (
        "import json, sys, threading\n"
        "from etcdlab.cluster.local import LocalCluster\n"
        "c = LocalCluster(1)\n"
        "c.start()\n"
        "print(json.dumps([c.pids(), str(c.base_dir)]), flush=True)\n"
        "threading.Event().wait()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        pids, base_dir = json.loads(first_line(process.stdout, 60, "the cluster script"))
        assert len(pids) == 1 and alive(pids[0])
        process.kill()
        process.wait(timeout=10)
        wait_until(lambda: not alive(pids[0]), 10, "etcd to die with its parent")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # Nobody is left to delete the data dir the killed parent made.
        if base_dir:
            shutil.rmtree(base_dir, ignore_errors=True)


def test_free_ports_are_distinct_within_one_call() -> None:
    ports = free_tcp_ports(64)
    assert len(set(ports)) == 64 and all(0 < port < 65536 for port in ports)

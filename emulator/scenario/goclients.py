"""The real Go clients as a run's components (``--clients go``).

Instead of the emulated control plane the engine can run the Go reference
program (``oracle/``, built by ``make oracle`` as ``.build/etcdlab-oracle``):
one ``apiserver`` process per apiserver of the plane's config (kube-apiserver's
own storage factory: an etcd client per resource balancing over every endpoint,
its livez and readyz etcd checks, a list+watch per resource and a write load)
and one ``elect`` process for the plane's leases (client-go's LeaderElector, the
plane's candidates per lease, named ``<lease>-<i>`` like the emulated ones,
candidate ``i`` writing through the client of apiserver ``i mod apiservers``).
They dial the same proxied endpoints, so the run's seeded faults meet them as
they meet the emulation, and their records (JSON lines in the timeline's
schema, ``oracle/README.md``) are merged into the run's Timeline as they come.

The Go code's own timings (keepalive 30 s / 10 s, dial timeout 20 s) are
constants of ``k8s.io/apiserver``, so a Go run is at real timings (time scale
1). It has no workloads and no controllers: their claims are not observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcdlab.cluster.local import die_with_parent_prefix
from etcdlab.common.timeline import ErrorClass, Event, EventKind, Health, LeaderChange, Recorder
from etcdlab.common.timeline import Request as RequestRecord
from etcdlab.controlplane.plane import KCM_LEASE, SCHEDULER_LEASE, PlaneConfig

ORACLE_ENV = "ETCDLAB_ORACLE"
ORACLE_NAME = "etcdlab-oracle"
# The checkout this module was installed from (an editable install): where
# `make oracle` puts the binary.
CHECKOUT_BUILD = Path(__file__).resolve().parents[2] / ".build" / ORACLE_NAME
MISSING = (
    f"the Go reference {ORACLE_NAME} is not built: run `make oracle` (needs Go 1.26) "
    f"in the etcdlab checkout, or set {ORACLE_ENV} to the binary"
)
# A process asked to stop closes its clients first; past this it is killed.
STOP_GRACE = 20.0
# Object writes (creates, updates, deletes) the emulated plane makes per churn
# round with PlaneConfig's default sizes, controllers' included: 0.71/s on
# average at real timings with a churn every 15 s (0.53 to 0.78/s over 15 runs
# of the client fidelity bench, from the fault on, in its 10% loss cases).
# The Go reference writes at that rate, spread over its apiservers, so both
# sides put the same write traffic through the cluster's links: at the
# oracle's own 2/s per apiserver, a member with 30% loss on its links fell
# behind and failed nearly every request sent to it, where the emulated
# plane's traffic left it slow but serving (docs/BENCHMARKS.md, "Client fidelity").
WRITES_PER_CHURN = 10.6

Record = RequestRecord | Health | Event | LeaderChange


class OracleMissing(RuntimeError):
    """The Go reference binary is not there (see :data:`MISSING`)."""


def oracle_binary() -> Path:
    """The ``etcdlab-oracle`` to run: ``$ETCDLAB_ORACLE``, else ``.build/`` of the
    working directory or of this checkout, else one on ``PATH``."""
    configured = os.environ.get(ORACLE_ENV)
    if configured:
        path = Path(configured)
        if not _executable(path):
            raise OracleMissing(f"{ORACLE_ENV}={configured} is not an executable file; {MISSING}")
        return path
    for path in (Path.cwd() / ".build" / ORACLE_NAME, CHECKOUT_BUILD):
        if _executable(path):
            return path
    found = shutil.which(ORACLE_NAME)
    if found is None:
        raise OracleMissing(MISSING)
    return Path(found)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def leases(config: PlaneConfig) -> list[str]:
    """The plane's leases, in its order."""
    return [KCM_LEASE, SCHEDULER_LEASE, *(f"component-{i}" for i in range(config.components))]


def write_rate(config: PlaneConfig) -> float:
    """Object writes per second for each Go apiserver: the plane's (see
    :data:`WRITES_PER_CHURN`); none without churn."""
    if not config.churn_period:
        return 0.0
    return WRITES_PER_CHURN / config.churn_period / config.apiservers


def _seconds(value: float) -> str:
    return f"{value:.6g}"


def commands(
    binary: Path, endpoints: Sequence[str], config: PlaneConfig, start_unix: float
) -> dict[str, list[str]]:
    """Name -> argv of each process: the plane's apiservers and its elections.

    ``config`` is already scaled (and a Go run's scale is 1); the settings the
    oracle takes are passed from it so both sides run the same numbers.
    """
    common = [f"--start-unix={start_unix:.6f}"]
    result: dict[str, list[str]] = {}
    for i in range(config.apiservers):
        # Rotated like the plane's clients: for a client that balances over
        # every endpoint the order only decides which member is dialled first.
        rotated = [*endpoints[i % len(endpoints) :], *endpoints[: i % len(endpoints)]]
        name = f"apiserver-{i}"
        result[name] = [
            str(binary),
            "apiserver",
            f"--endpoints={','.join(rotated)}",
            f"--name={name}",
            f"--healthcheck-timeout={_seconds(config.client.health_check_timeout)}",
            f"--readycheck-timeout={_seconds(config.client.health_check_timeout)}",
            f"--probe-period={_seconds(config.client.health_check_interval)}",
            f"--request-timeout={_seconds(config.request_timeout)}",
            f"--write-rate={_seconds(write_rate(config))}",
            *common,
        ]
    election = config.election
    result["elect"] = [
        str(binary),
        "elect",
        f"--endpoints={','.join(endpoints)}",
        f"--lease={','.join(leases(config))}",
        f"--candidates={config.candidates}",
        f"--lease-duration={_seconds(election.lease_duration)}",
        f"--renew-deadline={_seconds(election.renew_deadline)}",
        f"--retry-period={_seconds(election.retry_period)}",
        f"--restart-delay={_seconds(config.restart_delay)}",
        # Candidate k writes through apiserver k's client in the emulated plane,
        # as every Lease write reaching a kube-apiserver goes through its one
        # client for leases: the candidates share clients the same way.
        f"--shared-clients={config.apiservers}",
        *common,
    ]
    return result


def parse_record(line: str) -> Record:
    """One JSON line of the oracle as a timeline record (ValueError if it is not one)."""
    data: dict[str, Any] = json.loads(line)
    kind = data.pop("type", None)
    try:
        if kind == "Request":
            error = data["error"]
            return RequestRecord(
                float(data["t"]),
                str(data["component"]),
                str(data["op"]),
                float(data["latency"]),
                None if error is None else ErrorClass(error),
                str(data.get("source", "etcd")),
                data.get("member"),
            )
        if kind == "Health":
            return Health(float(data["t"]), str(data["component"]), bool(data["healthy"]))
        if kind == "Event":
            return Event(
                float(data["t"]),
                str(data["component"]),
                EventKind(data["kind"]),
                str(data.get("detail", "")),
            )
        if kind == "LeaderChange":
            return LeaderChange(
                float(data["t"]), str(data["lease"]), str(data["candidate"]), bool(data["leading"])
            )
    except KeyError as error:
        raise ValueError(f"{kind} record without {error.args[0]!r}: {line.strip()}") from None
    raise ValueError(f"unknown record type {kind!r}: {line.strip()}")


@dataclass
class _Process:
    name: str
    process: asyncio.subprocess.Process
    reader: asyncio.Task[None]
    log: Path


class GoClients:
    """The oracle's processes as the run's components.

    Has the part of :class:`~etcdlab.controlplane.plane.ControlPlane` the engine
    drives (:class:`~etcdlab.scenario.components.Components`), so the engine runs
    either the same way.
    """

    def __init__(
        self,
        binary: Path,
        endpoints: Sequence[str],
        recorder: Recorder,
        config: PlaneConfig,
        logs: Path,
    ) -> None:
        self.binary = binary
        self.endpoints = list(endpoints)
        self.config = config
        self.logs = logs
        self.components = [
            f"{lease}-{c}" for lease in leases(config) for c in range(config.candidates)
        ]
        self.progress: dict[str, tuple[int, int]] = {}  # no workloads
        self.churning = False
        self._recorder = recorder
        self._processes: list[_Process] = []
        self._leading: dict[str, set[str]] = {}
        self._served: set[str] = set()
        self._errors: list[BaseException] = []

    async def start(self) -> None:
        """Start every process; their t = 0 is the recorder's."""
        start_unix = time.time() - self._recorder.now()
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = commands(self.binary, self.endpoints, self.config, start_unix)
        for name, args in argv.items():
            log = self.logs / f"oracle-{name}.log"
            with log.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    *die_with_parent_prefix(),
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    start_new_session=True,
                )
            reader = asyncio.create_task(self._read(name, process, log))
            self._processes.append(_Process(name, process, reader, log))

    async def _read(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            try:
                record = parse_record(line.decode())
            except ValueError as error:
                self._errors.append(RuntimeError(f"{ORACLE_NAME} {name}: {error}"))
                continue
            self._recorder.add(record)
            if isinstance(record, LeaderChange):
                holders = self._leading.setdefault(record.lease, set())
                (holders.add if record.leading else holders.discard)(record.candidate)
            elif isinstance(record, RequestRecord) and record.ok:
                self._served.add(record.component)
        code = await process.wait()
        if not self._recorder.finished:
            self._errors.append(
                RuntimeError(f"{ORACLE_NAME} {name} exited with {code}: {_tail(log)}")
            )

    def leaders(self) -> dict[str, str]:
        """Lease -> a candidate that believes it leads it (from the records)."""
        return {lease: min(who) for lease, who in self._leading.items() if who}

    def converged(self) -> bool:
        """Warm: every lease has a leader and every apiserver has been served."""
        apiservers = {f"apiserver-{i}" for i in range(self.config.apiservers)}
        return set(self.leaders()) == set(leases(self.config)) and apiservers <= self._served

    def failed_tasks(self) -> list[BaseException]:
        return list(self._errors)

    async def close(self) -> None:
        """SIGTERM every process (they close their clients), then wait; kill stragglers."""
        # One reaped before close() has a pid that may be another process's
        # by now (pid_max 32768): its group is never signalled.
        running = [each for each in self._processes if each.process.returncode is None]
        for each in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(each.process.pid, signal.SIGTERM)
        for each in self._processes:
            try:
                await asyncio.wait_for(each.process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(each.process.pid, signal.SIGKILL)
                await each.process.wait()
            finally:
                if each in running:
                    # Anything left in the process's group goes with it.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(each.process.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.CancelledError):
                await each.reader


def _tail(log: Path, lines: int = 3) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

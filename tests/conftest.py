"""Shared fixtures: real local etcd, proxy links in front of it and an echo
server behind them, cleaned up even when a test fails; and the one way a test
says it needs a tool this machine may lack (:func:`require_tool`, :func:`require`).

Every test runs under pytest-timeout's per-test limit (``timeout`` in
pyproject.toml), so a hang fails with a traceback instead of stalling the run
(an async one is cancelled where it waits, on asyncio's loop or uvloop's); a
test that legitimately runs longer says so with ``@pytest.mark.timeout(...)``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import traceback
from collections.abc import AsyncIterator, Iterable, Iterator
from types import FrameType
from typing import NoReturn

import grpc
import pytest

from etcdlab.cluster.local import LocalCluster, ServerFlags
from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.faults import Fault
from etcdlab.proxy.link import Address, ProxyLink

# CI installs every tool the tests use (.ci/run), so there a missing one is a
# broken set-up, not a reason to skip: CI=true turns the skip into a failure.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(missing: str | None) -> None:
    """Skip the calling test (fail it under CI=true) when ``missing`` is a reason
    this machine cannot run it ("needs root ...", "needs nft ..."); None: go on."""
    if missing is not None:
        _unavailable(missing)


def require_tool(tool: str, install: str) -> str:
    """The path of the program ``tool``; without it the calling test skips, or
    fails under CI=true. ``install`` says how to get it."""
    path = shutil.which(tool)
    if path is None:
        _unavailable(f"needs {tool} ({install})")
    return path


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason}: CI=true, where every tool is installed (.ci/run)", pytrace=False)
    pytest.skip(reason)


# Optional: the suite also runs with -p no:timeout (a debugger session, say).
@pytest.hookimpl(hookwrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: object) -> Iterator[None]:
    """An async test that times out is cancelled where it waits, after every
    task's stack is printed. pytest-timeout's own handler raises from inside the
    event loop: asyncio's shows only select(), and uvloop's swallows the error
    and runs on, hanging the suite."""
    yield
    timeout_handler = signal.getsignal(signal.SIGALRM)
    if not callable(timeout_handler):
        return  # the thread method: no signal
    name = getattr(item, "originalname", item.name)
    seconds = getattr(settings, "timeout", None)

    def handler(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        loop = asyncio._get_running_loop()
        tasks = asyncio.all_tasks(loop) if loop is not None else set()
        test = [t for t in tasks if getattr(t.get_coro(), "__name__", None) == name]
        if loop is None or not test:
            timeout_handler(signum, frame)
            return
        terminal = item.config.get_terminal_writer()
        terminal.sep("+", title=f"Timeout (>{seconds}s): asyncio tasks")
        for task in tasks:
            terminal.line(f"{task.get_name()}:")
            terminal.write("".join(_awaiting(task.get_coro())))
        # Thread-safe: it wakes a loop blocked in select() or in libuv.
        loop.call_soon_threadsafe(test[0].cancel, f"Timeout (>{seconds}s) from pytest-timeout")

    signal.signal(signal.SIGALRM, handler)


def _awaiting(coro: object) -> list[str]:
    """Where a suspended coroutine waits, down the chain of what each awaits
    (a task's own stack shows only its outermost frame)."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        lines.extend(traceback.format_stack(frame, limit=1))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return lines


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's own, whose runs leave out the plugins of schemathesis and
    Hypothesis: they import both libraries, 1.5 s of CPU of every pytest start
    here, and no suite a test runs uses them (tests/proxy/test_openapi.py and
    the model tests do, in this session). Pytester clears PYTEST_ADDOPTS as it
    starts; this sets it after."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:schemathesis -p no:hypothesispytest")
    return pytester


# The time scale of the single member the proxy tests put a link in front of.
PROXY_TIME_SCALE = TimeScale(0.1)


def scaled(fault: Fault) -> Fault:
    """``fault`` on the clock of the ``member`` fixture's runs."""
    return fault.scaled(PROXY_TIME_SCALE)


def segments_lost(links: Iterable[ProxyLink | None]) -> int:
    """Segments the loss faults on ``links`` dropped (and had sent again)."""
    return sum(
        count
        for link in links
        if link is not None
        for (_, what), count in link.counters.faults_applied.items()
        if what == "segment_lost"
    )


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """A fresh 3-member cluster with fast raft timings for tests that break it."""
    with LocalCluster(3, flags=ServerFlags.scaled(0.2)) as local:
        yield local
        local.close(graceful=False)  # killed: a graceful stop takes seconds, for deleted data


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[LocalCluster]:
    """One 3-member cluster for tests that only read and write keys."""
    with LocalCluster(3) as local:
        yield local
        local.close(graceful=False)  # as above


@pytest.fixture
async def channel(shared_cluster: LocalCluster) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(shared_cluster.endpoints[0]) as chan:
        yield chan


@pytest.fixture(scope="module")
def member() -> Iterator[Address]:
    """One etcd member (timings scaled by PROXY_TIME_SCALE): its client address."""
    with LocalCluster(1, flags=ServerFlags.scaled(PROXY_TIME_SCALE)) as local:
        host, port = local.endpoints[0].rsplit(":", 1)
        yield host, int(port)


@pytest.fixture
async def link(member: Address) -> AsyncIterator[ProxyLink]:
    """A proxy link in front of ``member``, no faults yet (give it :func:`scaled` ones)."""
    async with ProxyLink("member0", member, seed=1) as proxied:
        yield proxied


@pytest.fixture
async def echo() -> AsyncIterator[Address]:
    """A TCP server that sends back whatever it reads."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    async with server:
        yield host, port

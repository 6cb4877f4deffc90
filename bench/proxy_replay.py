"""The proxy's CPU per call without sockets: a recorded load replayed in-process.

``record`` runs one real etcd member and a load (the one of
:mod:`etcdlab.bench.proxy_overhead`) through a plain asyncio pump that keeps
every chunk each side read, in order. ``replay`` feeds those chunks, in the
same order and sizes, to the connections of a :class:`ProxyLink` with no
fault whose transports only count bytes, and prints the proxy's CPU time per
call (the least of ``--rounds``) for a raw link (the bare pump) and an HTTP/2
link. No kernel, no other process: what is left is the proxy's own Python,
which a loaded machine slows but does not add to. Under callgrind, counting
only the replay loop (it runs inside ``functools.reduce`` for that), the
figure is an instruction count that does not move with load at all.

    .venv/bin/python -m etcdlab.bench.proxy_replay record range32.rec --clients 32 --op range
    .venv/bin/python -m etcdlab.bench.proxy_replay replay range32.rec --rounds 7
    valgrind --tool=callgrind --toggle-collect=functools_reduce --callgrind-out-file=/dev/null \\
        .venv/bin/python -m etcdlab.bench.proxy_replay replay range32.rec --rounds 1 --link http2
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from etcdlab.bench.proxy_overhead import load
from etcdlab.cluster.local import LocalCluster
from etcdlab.proxy.connection import Connection
from etcdlab.proxy.link import ProxyLink

# One recorded chunk: connection number, direction (0 client to server, 1
# back), length; then its bytes. The file starts with the number of calls.
_CHUNK = struct.Struct(">IBI")
_CALLS = struct.Struct(">Q")
UP, DOWN = 0, 1

Chunk = tuple[int, int, bytes]


class _Recorder(asyncio.Protocol):
    """One side of a pump connection that keeps what it reads."""

    def __init__(self, chunks: list[Chunk], index: int, direction: int) -> None:
        self.chunks = chunks
        self.index = index
        self.direction = direction
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append((self.index, self.direction, data))
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


async def _record(upstream: str, clients: int, op: str, seconds: float) -> tuple[int, list[Chunk]]:
    loop = asyncio.get_running_loop()
    host, port = upstream.rsplit(":", 1)
    chunks: list[Chunk] = []
    tasks: set[asyncio.Task[None]] = set()
    count = 0

    async def connect(client: _Recorder) -> None:
        _, server = await loop.create_connection(
            lambda: _Recorder(chunks, client.index, DOWN), host, int(port)
        )
        assert client.transport is not None and server.transport is not None
        server.peer, client.peer = client.transport, server.transport
        for data in client.early:
            server.transport.write(data)

    def accept() -> _Recorder:
        nonlocal count
        count += 1
        client = _Recorder(chunks, count, UP)
        task = loop.create_task(connect(client))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return client

    pump = await loop.create_server(accept, "127.0.0.1", 0)
    try:
        calls, _ = await load(f"127.0.0.1:{pump.sockets[0].getsockname()[1]}", clients, op, seconds)
    finally:
        pump.close()
        await pump.wait_closed()
    return calls, chunks


def save(path: Path, calls: int, chunks: list[Chunk]) -> None:
    with path.open("wb") as out:
        out.write(_CALLS.pack(calls))
        for index, direction, data in chunks:
            out.write(_CHUNK.pack(index, direction, len(data)))
            out.write(data)


def read(path: Path) -> tuple[int, list[Chunk]]:
    raw = path.read_bytes()
    (calls,) = _CALLS.unpack_from(raw, 0)
    pos = _CALLS.size
    chunks: list[Chunk] = []
    while pos < len(raw):
        index, direction, size = _CHUNK.unpack_from(raw, pos)
        pos += _CHUNK.size
        chunks.append((index, direction, raw[pos : pos + size]))
        pos += size
    return calls, chunks


class CountingTransport:
    """The transport methods the proxy calls, doing nothing but count bytes."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.written += len(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def replay_once(chunks: list[Chunk], http2: bool) -> float:
    """CPU seconds the proxy spends forwarding ``chunks`` and closing the connections."""
    link = ProxyLink("replay", ("127.0.0.1", 9), http2=http2)
    conns: dict[int, Connection] = {}
    steps: list[tuple[Callable[..., None], tuple[bytes, ...]]] = []
    for index, direction, data in chunks:
        conn = conns.get(index)
        if conn is None:
            conn = Connection(link, cast(asyncio.Transport, CountingTransport()), index)
            link.adopt(conn)
            conn.attach_server(cast(asyncio.Transport, CountingTransport()))
            conns[index] = conn
        steps.append(((conn.up if direction == UP else conn.down).on_data, (data,)))
    # Closing follows what was left to follow, as a connection's end does.
    steps += [(conn.abort, ()) for conn in conns.values()]
    started = time.process_time()
    functools.reduce(lambda _, step: step[0](*step[1]), steps, None)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="record a load through a plain pump")
    record.add_argument("file", type=Path)
    record.add_argument("--clients", type=int, default=32)
    record.add_argument("--op", choices=["range", "put"], default="range")
    record.add_argument("--seconds", type=float, default=3.0)
    replay = commands.add_parser("replay", help="replay a recording through the proxy")
    replay.add_argument("file", type=Path)
    replay.add_argument("--rounds", type=int, default=7)
    replay.add_argument("--link", choices=["raw", "http2"], nargs="+", default=["raw", "http2"])
    args = parser.parse_args()
    if args.command == "record":
        with LocalCluster(1) as cluster:
            calls, chunks = asyncio.run(
                _record(cluster.endpoints[0], args.clients, args.op, args.seconds)
            )
        save(args.file, calls, chunks)
        print(f"{calls} calls, {len(chunks)} chunks, {sum(len(c[2]) for c in chunks)} bytes")
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    calls, chunks = read(args.file)
    for kind in args.link:
        best = min(asyncio.run(replay_once(chunks, kind == "http2")) for _ in range(args.rounds))
        print(
            f"{args.file.name} {kind}: {best / calls * 1e6:.2f} us of proxy CPU per call "
            f"({len(chunks) / calls:.2f} chunks per call)",
            flush=True,
        )


if __name__ == "__main__":
    main()

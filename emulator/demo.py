"""``etcdlab demo``: start a local cluster and make a put/get/watch round trip.

A first look that needs nothing but the install; the scenario engine replaces
it with the packet-loss run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from emulator.argtypes import positive_int
from emulator.cluster import LocalCluster
from protos import rpc_pb2, rpc_pb2_grpc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="start a local cluster and do a put/get/watch round trip",
        description=(
            "Start a local etcd cluster, watch a key on one member, put it through "
            "another, read it back from a third, and print what each step took."
        ),
    )
    demo.add_argument("--members", type=positive_int, default=3, help="members (default 3)")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with LocalCluster(args.members) as cluster:
        print(f"cluster of {args.members} up in {time.monotonic() - started:.2f}s:")
        for endpoint in cluster.endpoints:
            print(f"  {endpoint}")
        leader = cluster.leader()
        print(f"raft leader: etcd-{leader}")
        asyncio.run(round_trip(cluster.endpoints))
    print("cluster stopped, data removed")
    return 0


async def round_trip(endpoints: list[str]) -> None:
    """Watch on the first member, put via the second, read via the last."""
    key, value = b"/etcdlab/demo", f"hello at {time.time():.0f}".encode()
    async with (
        grpc.aio.insecure_channel(endpoints[0]) as watch_channel,
        grpc.aio.insecure_channel(endpoints[min(1, len(endpoints) - 1)]) as put_channel,
        grpc.aio.insecure_channel(endpoints[-1]) as get_channel,
    ):
        requests: asyncio.Queue[rpc_pb2.WatchRequest] = asyncio.Queue()
        await requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)))

        async def request_stream() -> AsyncIterator[rpc_pb2.WatchRequest]:
            while True:
                yield await requests.get()

        watch = rpc_pb2_grpc.WatchStub(watch_channel).Watch(request_stream())
        created = await asyncio.wait_for(watch.read(), 5)
        if not isinstance(created, rpc_pb2.WatchResponse) or not created.created:
            raise RuntimeError("watch was not created")
        t0 = time.monotonic()
        put = await rpc_pb2_grpc.KVStub(put_channel).Put(
            rpc_pb2.PutRequest(key=key, value=value), timeout=5
        )
        print(
            f"put  {key.decode()} = {value.decode()!r} at revision {put.header.revision}"
            f" ({(time.monotonic() - t0) * 1000:.1f} ms)"
        )
        t0 = time.monotonic()
        got = await rpc_pb2_grpc.KVStub(get_channel).Range(rpc_pb2.RangeRequest(key=key), timeout=5)
        print(
            f"get  {got.kvs[0].value.decode()!r} from another member"
            f" ({(time.monotonic() - t0) * 1000:.1f} ms)"
        )
        event = await asyncio.wait_for(watch.read(), 5)
        if not isinstance(event, rpc_pb2.WatchResponse):
            raise RuntimeError("watch ended before the put arrived")
        print(f"watch saw {len(event.events)} event(s) at revision {event.header.revision}")
        watch.cancel()

"""The retry benchmark's load: clients that retry with a strategy's policy, and
the operations they run.

Every retry is the client's own (:class:`~etcdlab.client.etcd.EtcdClient` with
the strategy's :class:`~etcdlab.client.retry.RetryPolicy`, a per-attempt
deadline and, for hedging strategies, its hedged reads); this module only
counts the RPC attempts each operation made, through the client's
``on_attempt``.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from etcdlab.bench.retry_config import BenchConfig
from etcdlab.bench.retry_metrics import OperationRecord
from etcdlab.bench.retry_strategies import HEDGE_DELAY, MAX_ATTEMPTS, Strategy
from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import EtcdError
from etcdlab.client.etcd import EtcdClient, mod_revision_is
from etcdlab.protos import rpc_pb2

# The send times of the operation running in this task. The client's hedged
# read runs its copies in tasks of their own, which inherit the context, so
# their attempts land in the same list.
_SENDS: ContextVar[list[float]] = ContextVar("sends")
HERD_KEY = b"/bench/herd"
# A herd write is bounded by the operation deadline, not an attempt count, as in
# AWS's runs.
HERD_ATTEMPTS = 1000


class Workload:
    """``cfg.clients`` clients, client *i* starting on member *i* mod members,
    each with its own policy from ``strategy``; a second set for the herd."""

    def __init__(
        self,
        cfg: BenchConfig,
        strategy: Strategy,
        addresses: list[str],
        seed: int,
        herd: bool,
    ) -> None:
        self.cfg = cfg
        self.hedge_after = cfg.wall(HEDGE_DELAY) if strategy.hedge else None
        self.t0 = asyncio.get_running_loop().time()
        self.records: list[OperationRecord] = []
        self.sends: list[float] = []
        self.revisions: dict[bytes, int] = {}
        self.herd_sends: list[float] = []
        self.herd_done: list[float | None] = []
        config = ClientConfig(seed=seed, attempt_timeout=cfg.attempt_timeout).scaled(cfg.time_scale)

        def client(i: int, name: str, policy_seed: int, attempts: int) -> EtcdClient:
            start = i % len(addresses)
            return EtcdClient(
                addresses[start:] + addresses[:start],
                config,
                retry=strategy.policy(policy_seed, cfg.time_scale, attempts),
                name=f"{name}{i}",
                on_attempt=self._attempted,
            )

        self.clients = [
            client(i, "bench", seed * 1000 + i, MAX_ATTEMPTS) for i in range(cfg.clients)
        ]
        # Channels open on first use: herd clients cost nothing until the herd starts.
        self.herd_clients = (
            [client(i, "herd", seed * 1000 + 500 + i, HERD_ATTEMPTS) for i in range(cfg.clients)]
            if herd
            else []
        )

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    def _attempted(self, method: str) -> None:
        _SENDS.get().append(self.now())

    async def close(self) -> None:
        for client in self.clients + self.herd_clients:
            await client.close()

    async def operation(self, index: int, write: bool, key: bytes) -> None:
        """A linearizable read or a compare-guarded write of ``key``, within the
        operation deadline, retried by the client as its policy says."""
        sends: list[float] = []
        _SENDS.set(sends)
        start = self.now()
        client = self.clients[index]
        timeout = self.cfg.wall(self.cfg.op_timeout)
        try:
            if write:
                await self._write(client, key, timeout)
            else:
                await self._read(client, key, timeout)
            ok = True
        except EtcdError:
            ok = False
        self.sends += sends
        self.records.append(OperationRecord(start, self.now(), ok, len(sends)))

    async def herd_write(self, index: int) -> None:
        """Increment one shared counter: read it, write it back if unchanged
        (optimistic concurrency, as in AWS's backoff experiment).

        The client retries failed RPCs; a lost race is no failure to it, so a
        conflict is tried again here, after the wait the same policy gives,
        until the policy gives up or the deadline passes.
        """
        sends: list[float] = []
        _SENDS.set(sends)
        client = self.herd_clients[index]
        deadline = self.now() + self.cfg.wall(self.cfg.op_timeout)
        done: float | None = None
        attempt = 0
        previous = 0.0
        try:
            while True:
                attempt += 1
                reply = await client.get(HERD_KEY, timeout=deadline - self.now())
                kv = reply.kvs[0] if reply.kvs else None
                value = str(int(kv.value) + 1 if kv else 1).encode()
                txn = await client.txn(
                    [mod_revision_is(HERD_KEY, kv.mod_revision if kv else 0)],
                    [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=HERD_KEY, value=value))],
                    timeout=deadline - self.now(),
                )
                if txn.succeeded:
                    done = self.now()
                    break
                wait = client.retry.delay(attempt, previous)
                if wait is None or self.now() + wait >= deadline:
                    break
                previous = wait
                await asyncio.sleep(wait)
        except EtcdError:
            pass
        self.herd_sends += sends
        self.herd_done.append(done)

    async def _read(self, client: EtcdClient, key: bytes, timeout: float) -> None:
        reply = await client.get(key, timeout=timeout, hedge_after=self.hedge_after)
        if reply.kvs:
            self.revisions[key] = reply.kvs[0].mod_revision

    async def _write(self, client: EtcdClient, key: bytes, timeout: float) -> None:
        reply = await client.txn(
            [mod_revision_is(key, self.revisions.get(key, 0))],
            [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))],
            [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
            timeout=timeout,
            # Guarded by the key's mod revision: a repeat of an applied write
            # fails the compare and returns the key, so retrying is safe.
            idempotent=True,
        )
        if reply.succeeded:
            self.revisions[key] = reply.header.revision
        else:
            kvs = reply.responses[0].response_range.kvs
            self.revisions[key] = kvs[0].mod_revision if kvs else 0

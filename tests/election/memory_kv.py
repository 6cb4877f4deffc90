"""A fake of etcd's Txn over one in-memory key space, for the lock's and the
fenced writer's unit tests: equality compares on a key's create or mod
revision, range and put. Not etcd: the same code runs against real members in
test_lock.py and test_concurrency.py."""

from __future__ import annotations

from collections.abc import Sequence

from etcdlab.protos import kv_pb2, rpc_pb2


class MemoryKV:
    def __init__(self) -> None:
        self.kvs: dict[bytes, kv_pb2.KeyValue] = {}
        self.revision = 1
        self.calls: list[tuple[bool, float | None]] = []
        """(idempotent, timeout) of every txn."""

    def put(self, key: bytes, value: bytes) -> None:
        self.revision += 1
        old = self.kvs.get(key)
        created = old.create_revision if old is not None else self.revision
        self.kvs[key] = kv_pb2.KeyValue(
            key=key, value=value, create_revision=created, mod_revision=self.revision
        )

    def _holds(self, compare: rpc_pb2.Compare) -> bool:
        assert compare.result == rpc_pb2.Compare.EQUAL
        stored = self.kvs.get(compare.key)
        if compare.target == rpc_pb2.Compare.CREATE:
            return (stored.create_revision if stored else 0) == compare.create_revision
        assert compare.target == rpc_pb2.Compare.MOD
        return (stored.mod_revision if stored else 0) == compare.mod_revision

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> rpc_pb2.TxnResponse:
        self.calls.append((idempotent, timeout))
        succeeded = all(self._holds(c) for c in compare)
        responses = []
        for op in success if succeeded else failure:
            if op.HasField("request_range"):
                found = self.kvs.get(op.request_range.key)
                ranged = rpc_pb2.RangeResponse(kvs=[found] if found else [])
                responses.append(rpc_pb2.ResponseOp(response_range=ranged))
            else:
                self.put(op.request_put.key, op.request_put.value)
                responses.append(rpc_pb2.ResponseOp(response_put=rpc_pb2.PutResponse()))
        return rpc_pb2.TxnResponse(
            succeeded=succeeded,
            responses=responses,
            header=rpc_pb2.ResponseHeader(revision=self.revision),
        )

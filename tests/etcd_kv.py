"""A bare ``TxnKV`` over the generated stubs, for lock tests below the client."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from protos import rpc_pb2, rpc_pb2_grpc


class StubKV:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = rpc_pb2_grpc.KVStub(channel)

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
        timeout: float | None = None,
    ) -> rpc_pb2.TxnResponse:
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        reply: rpc_pb2.TxnResponse = await self._stub.Txn(request, timeout=timeout)
        return reply

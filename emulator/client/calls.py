"""One call, from its first attempt to its answer or its error: clientv3's retry
interceptor over the balancer.

Each attempt waits for a ready connection from the balancer (up to the call's
deadline; clientv3 sets ``WaitForReady``), goes out over it, and on failure
asks :func:`~etcdlab.client.retry.retry_reason` whether it may be repeated and
the :class:`~etcdlab.client.retry.RetryPolicy` how long to wait first. Reads
therefore move on to the next connection at once when a member answers
UNAVAILABLE ("no leader", a closed connection, a keepalive timeout), while a
write that went out is not repeated: UNAVAILABLE may mean it was applied.

:func:`served_by` tells a caller which member answered: like the Go
reference's member hook, it holds the endpoint of the last attempt that
reached a connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from etcdlab.client.balancer import Balancer
from etcdlab.client.config import ClientConfig
from etcdlab.client.connection import Connection, Route
from etcdlab.client.errors import (
    ClusterUnavailableError,
    ContextError,
    EtcdError,
    from_rpc_error,
)
from etcdlab.client.retry import RetryPolicy, retry_reason
from etcdlab.common.clock import Clock

T = TypeVar("T")

# One RPC on a channel, with the seconds it may take (None: no deadline).
Invoke = Callable[[grpc.aio.Channel, float | None], Awaitable[T]]
AttemptObserver = Callable[[str], None]


@dataclass
class ClientStats:
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    """Calls started, by method."""
    attempts: int = 0
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    """Retries, by reason (``dial``, ``unavailable``, ``keepalive``, ``attempt_timeout``)."""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    """Failed calls, by error class (a hedged read whose primary failed while
    the hedge answered counts too)."""
    hedges: int = 0
    """Hedged reads sent (second attempts on another connection)."""
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    """Attempts answered successfully, by endpoint: the share each member served."""


@dataclass
class Served:
    endpoint: str | None = None
    """Endpoint of the last attempt that reached a connection (None: none did)."""


_served: contextvars.ContextVar[Served | None] = contextvars.ContextVar("served", default=None)


@contextlib.contextmanager
def served_by() -> Iterator[Served]:
    """Within this context, calls note which endpoint served them in the value."""
    served = Served()
    token = _served.set(served)
    try:
        yield served
    finally:
        _served.reset(token)


def _note_served(route: Route) -> str | None:
    """Note ``route`` as the serving endpoint; returns the one noted before."""
    served = _served.get()
    if served is None:
        return None
    previous, served.endpoint = served.endpoint, route.address
    return previous


def _restore_served(previous: str | None) -> None:
    served = _served.get()
    if served is not None:
        served.endpoint = previous


class Caller:
    """Runs calls for one client: attempts, retries, hedges and their counts."""

    def __init__(
        self,
        balancer: Balancer,
        retry: RetryPolicy,
        config: ClientConfig,
        clock: Clock,
        on_attempt: AttemptObserver | None = None,
    ) -> None:
        self.stats = ClientStats()
        self._balancer = balancer
        self._retry = retry
        self._config = config
        self._clock = clock
        self._on_attempt = on_attempt

    def failed(self, error: EtcdError) -> EtcdError:
        """Count a call's final error and return it for raising."""
        self.stats.errors[type(error).__name__] += 1
        return error

    async def call(
        self,
        method: str,
        invoke: Invoke[T],
        *,
        safe: bool,
        timeout: float | None,
        routes: list[Route] | None = None,
    ) -> T:
        """``invoke`` until it answers or may not be retried. ``routes`` collects
        the route of each attempt (for hedging)."""
        if timeout is None:
            timeout = self._config.request_timeout
        deadline = None if timeout is None else self._clock.now() + timeout
        self.stats.calls[method] += 1
        self._retry.record_call()
        attempt = 0
        previous = 0.0
        while True:
            attempt += 1
            left = self._left(deadline)
            if left is not None and left <= 0:
                raise self.failed(
                    ContextError(
                        f"{method}: deadline exceeded before attempt {attempt}",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                    )
                )
            try:
                route = await self._balancer.pick(left)
            except TimeoutError:
                raise self.failed(
                    ContextError(
                        f"{method}: deadline exceeded waiting for a ready connection "
                        f"({self._balancer.why_not_ready()})",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                    )
                ) from None
            if routes is not None:
                routes.append(route)
            left = self._left(deadline)
            per_try = self._per_try(left)
            try:
                result = await self._attempt(method, route, invoke, per_try)
            except EtcdError as failure:
                error = failure
            else:
                self._retry.record_result(True)
                return result
            sent = not isinstance(error, _NotSent)
            if isinstance(error, ContextError):
                expired = per_try != left and error.code == grpc.StatusCode.DEADLINE_EXCEEDED
                if not expired:
                    raise self.failed(error)
                # The attempt's own deadline passed, not the caller's: another try
                # is safe unless the request went out and may have been applied.
                reason = "attempt_timeout" if safe else None
            else:
                reason = retry_reason(error.code, error.details, sent=sent, safe=safe)
            if reason is None:
                if isinstance(error, ClusterUnavailableError):
                    raise self.failed(
                        ClusterUnavailableError(
                            f"{method}: not retried, the write may have been applied: {error}",
                            code=error.code,
                            details=error.details,
                            endpoint=route.address,
                            attempts=attempt,
                        )
                    )
                raise self.failed(error)
            self._retry.record_result(False)
            wait = self._retry.delay(attempt, previous)
            if wait is None:
                if not isinstance(error, ClusterUnavailableError):
                    raise self.failed(error)
                raise self.failed(
                    ClusterUnavailableError(
                        f"{method}: gave up after {attempt} attempts; last: {error}",
                        code=error.code,
                        details=error.details,
                        endpoint=route.address,
                        attempts=attempt,
                    )
                )
            if deadline is not None and self._clock.now() + wait >= deadline:
                raise self.failed(
                    ContextError(
                        f"{method}: deadline exceeded after {attempt} attempts; last: {error}",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                        endpoint=route.address,
                    )
                )
            self.stats.retries[reason] += 1
            previous = wait
            if wait > 0:
                await self._clock.sleep(wait)

    async def call_on(
        self, method: str, connection: Connection, invoke: Invoke[T], timeout: float | None
    ) -> T:
        """One attempt on ``connection`` once it is ready: no other endpoint, no retry."""
        self.stats.calls[method] += 1
        try:
            return await self._attempt_on(method, connection, invoke, timeout)
        except EtcdError as error:
            raise self.failed(error) from None

    async def hedged(
        self, method: str, invoke: Invoke[T], *, timeout: float | None, hedge_after: float
    ) -> T:
        """A repeatable call sent once more over another ready connection when it
        has no answer after ``hedge_after`` seconds, or at once if it already
        failed as unavailable (gRFC A6 hedging); the first answer wins."""
        if timeout is None:
            timeout = self._config.request_timeout
        deadline = None if timeout is None else self._clock.now() + timeout
        routes: list[Route] = []
        primary = asyncio.create_task(
            self.call(method, invoke, safe=True, timeout=timeout, routes=routes)
        )
        pending: set[asyncio.Task[T]] = {primary}
        try:
            # hedge_after on the client's clock (a FakeClock's too), not the loop's.
            timer = asyncio.ensure_future(self._clock.sleep(hedge_after))
            await asyncio.wait((primary, timer), return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
            alternative = self._alternative(routes[-1].connection if routes else None)
            left = self._left(deadline)
            failed = primary.done() and isinstance(
                primary.exception(), ClusterUnavailableError | ContextError
            )
            if (not primary.done() or failed) and alternative is not None and left != 0.0:
                self.stats.hedges += 1
                hedge = self._attempt_on(method, alternative, invoke, left)
                pending.add(asyncio.create_task(hedge))
            first_error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if task is primary or first_error is None:
                        first_error = error
            assert first_error is not None
            raise first_error
        finally:
            for task in pending:
                task.cancel()

    # -- one attempt -------------------------------------------------------------

    async def _attempt_on(
        self, method: str, connection: Connection, invoke: Invoke[T], timeout: float | None
    ) -> T:
        left = self._per_try(timeout)
        try:
            route = await self._balancer.wait_ready(connection, left)
        except TimeoutError:
            raise ContextError(
                f"{connection.address}: deadline exceeded waiting for the connection",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
                endpoint=connection.address,
            ) from None
        return await self._attempt(method, route, invoke, left)

    async def _attempt(
        self, method: str, route: Route, invoke: Invoke[T], timeout: float | None
    ) -> T:
        self.stats.attempts += 1
        if self._on_attempt is not None:
            self._on_attempt(method)
        # Noted as the call goes out, as the Go reference's member hook is set
        # when the headers reach a transport: a call abandoned while waiting
        # for its answer still names the member that kept it waiting.
        previous = _note_served(route)
        try:
            result = await invoke(route.channel, timeout)
        except grpc.aio.UsageError:
            # The connection was closed between the pick and the call.
            _restore_served(previous)
            raise _NotSent(
                f"{route.address}: connection closed before the call went out",
                code=grpc.StatusCode.UNAVAILABLE,
                endpoint=route.address,
            ) from None
        except grpc.aio.AioRpcError as rpc_error:
            error = from_rpc_error(rpc_error, route.address)
            _note_served(route)
            route.failed(error)
            raise error from None
        self.stats.served[route.address] += 1
        # Again on the answer: of a hedged read's two attempts, the one answering.
        _note_served(route)
        return result

    def _alternative(self, used: Connection | None) -> Connection | None:
        return next((c for c in self._balancer.ready if c is not used), None)

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._clock.now()

    def _per_try(self, left: float | None) -> float | None:
        """An attempt's deadline: what the call has left, bounded by ``attempt_timeout``."""
        limit = self._config.attempt_timeout
        if limit is None:
            return left
        return limit if left is None else min(left, limit)


class _NotSent(ClusterUnavailableError):
    """The attempt never left the client: safe to repeat, even for a write."""

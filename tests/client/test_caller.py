"""The Caller's bookkeeping and errors: what it counts, what each final error
carries, where its deadlines fall, one-connection calls and hedges.

On a FakeClock over the fake connections of tests/client/fake_network.py;
``Answers`` scripts each member's answers (a fake of the members, not etcd).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest

from etcdlab.client.balancer import Sticky
from etcdlab.client.calls import Caller, served_by
from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import ClusterUnavailableError, ContextError
from etcdlab.client.retry import FixedDelay, NoRetry, RetryPolicy
from etcdlab.common.clock import FakeClock
from tests.client.fake_network import FakeChannel, FakeNetwork, make_balancer
from tests.client.test_retry_policies import Recording

ENDPOINTS = ["m0:2379", "m1:2379", "m2:2379"]
HANG = "hang"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class Answers:
    """Each member answers from its queue (an error to raise, ``HANG``, or the
    default: its address); every attempt is logged with the time it was given."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.queued: dict[str, list[grpc.aio.AioRpcError | str]] = {a: [] for a in ENDPOINTS}
        self.always: dict[str, grpc.aio.AioRpcError | str] = {}
        self.log: list[tuple[str, float | None]] = []

    async def invoke(self, channel: grpc.aio.Channel, left: float | None) -> str:
        address = cast(FakeChannel, channel).address
        self.log.append((address, left))
        answer = self.queued[address].pop(0) if self.queued[address] else self.always.get(address)
        if answer == HANG:
            await (self.clock.sleep(left) if left is not None else asyncio.Event().wait())
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if isinstance(answer, grpc.aio.AioRpcError):
            raise answer
        return address


class Members:
    """Members (m0-m2 unless told) on a FakeClock, answering as ``answers`` says;
    calls stay on m0 while it is ready (Sticky), so each attempt's member is known."""

    def __init__(self, endpoints: list[str], network: FakeNetwork) -> None:
        self.clock = network.clock
        self.balancer, _ = make_balancer(endpoints, Sticky(endpoints), self.clock, network)
        self.answers = Answers(self.clock)

    def caller(
        self, retry: RetryPolicy | None = None, **config: object
    ) -> tuple[Caller, list[str]]:
        """A Caller over these members (``config``: ClientConfig fields), and the
        methods of its attempts as they are made."""
        seen: list[str] = []
        settings = ClientConfig(**config)  # type: ignore[arg-type]
        made = Caller(
            self.balancer, retry or NoRetry(), settings, self.clock, on_attempt=seen.append
        )
        return made, seen


@contextlib.asynccontextmanager
async def members(
    endpoints: list[str] = ENDPOINTS, network: FakeNetwork | None = None
) -> AsyncIterator[Members]:
    """:class:`Members` whose connections have been dialled (and are ready, on the
    default network); closed when the block ends."""
    made = Members(endpoints, network or FakeNetwork(FakeClock()))
    made.balancer.start()
    try:
        await made.clock.advance(0)
        yield made
    finally:
        await made.balancer.close()


@pytest.fixture
async def sticky() -> AsyncIterator[Members]:
    async with members() as made:
        yield made


UNAVAILABLE = rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out")


@pytest.fixture
def m0_unavailable(sticky: Members) -> Members:
    """Members where m0, the one every call goes to, answers UNAVAILABLE to each."""
    sticky.answers.always["m0:2379"] = UNAVAILABLE
    return sticky


async def test_calls_attempts_errors_and_answers_are_counted(
    sticky: Members,
) -> None:
    answers = sticky.answers
    calls, seen = sticky.caller(FixedDelay(0.0, max_attempts=5))
    answers.queued["m0:2379"] = [UNAVAILABLE, UNAVAILABLE]
    assert await calls.call("range", answers.invoke, safe=True, timeout=5.0) == "m0:2379"
    await calls.call("range", answers.invoke, safe=True, timeout=5.0)
    answers.always["m0:2379"] = UNAVAILABLE
    for _ in range(2):
        with pytest.raises(ClusterUnavailableError):
            await calls.call("put", answers.invoke, safe=False, timeout=5.0)
    assert calls.stats.calls == {"range": 2, "put": 2}
    assert calls.stats.attempts == 6 and seen == ["range"] * 4 + ["put"] * 2
    assert calls.stats.retries == {"unavailable": 2}
    assert calls.stats.errors == {"ClusterUnavailableError": 2}
    assert calls.stats.served == {"m0:2379": 2}


# A retrying policy: the write is not retried all the same (it may have been applied).
@pytest.mark.parametrize(("method", "safe", "attempts", "why"), [
    ("put", False, 1, "put: not retried, the write may have been applied: "),
    ("range", True, 3, "range: gave up after 3 attempts; last: "),
])  # fmt: skip
async def test_a_final_unavailable_says_why_and_carries_the_last_failure(
    m0_unavailable: Members, method: str, safe: bool, attempts: int, why: str
) -> None:
    calls, _ = m0_unavailable.caller(FixedDelay(0.0, max_attempts=3))
    with pytest.raises(ClusterUnavailableError) as raised:
        await calls.call(method, m0_unavailable.answers.invoke, safe=safe, timeout=5.0)
    error = raised.value
    assert str(error).startswith(why)
    assert (error.code, error.details) == (
        grpc.StatusCode.UNAVAILABLE,
        "etcdserver: request timed out",
    )
    assert (error.endpoint, error.attempts) == ("m0:2379", attempts)
    assert calls.stats.errors == {"ClusterUnavailableError": 1}


async def test_a_retry_that_would_end_at_the_deadline_is_not_made(
    m0_unavailable: Members,
) -> None:
    clock, answers = m0_unavailable.clock, m0_unavailable.answers
    calls, _ = m0_unavailable.caller(FixedDelay(1.0, max_attempts=10))
    call = asyncio.ensure_future(calls.call("range", answers.invoke, safe=True, timeout=2.0))
    await clock.advance(3.0)
    with pytest.raises(ContextError) as raised:
        await call
    # Attempts at 0 and 1; a wait of 1 s from 1 would end at the deadline, 2.
    assert str(raised.value).startswith("range: deadline exceeded after 2 attempts; last: ")
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.endpoint == "m0:2379"
    assert [left for _, left in answers.log] == [2.0, 1.0]


async def test_the_config_request_timeout_is_the_default_deadline(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.always["m0:2379"] = HANG
    calls, _ = sticky.caller(request_timeout=4.0)
    call = asyncio.ensure_future(calls.call("range", answers.invoke, safe=True, timeout=None))
    await clock.advance(4.0)
    with pytest.raises(ContextError):
        await call
    assert answers.log == [("m0:2379", 4.0)]


async def test_a_short_deadline_is_still_tried(sticky: Members) -> None:
    answers = sticky.answers
    calls, _ = sticky.caller()
    assert await calls.call("range", answers.invoke, safe=True, timeout=0.5) == "m0:2379"
    assert answers.log == [("m0:2379", 0.5)]


async def test_an_attempt_cancelled_by_the_member_is_not_retried(
    sticky: Members,
) -> None:
    answers = sticky.answers
    answers.queued["m0:2379"] = [rpc_error(grpc.StatusCode.CANCELLED, "context canceled")]
    calls, _ = sticky.caller(FixedDelay(0.0, max_attempts=5), attempt_timeout=1.0)
    with pytest.raises(ContextError):
        await calls.call("range", answers.invoke, safe=True, timeout=5.0)
    assert len(answers.log) == 1


async def test_a_call_on_one_connection_waits_for_it_and_counts_its_failure(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    calls, seen = sticky.caller()
    m2 = sticky.balancer.connection("m2:2379")
    assert await calls.call_on("status", m2, answers.invoke, 3.0) == "m2:2379"
    answers.always["m2:2379"] = UNAVAILABLE
    with pytest.raises(ClusterUnavailableError):
        await calls.call_on("status", m2, answers.invoke, 3.0)
    assert answers.log == [("m2:2379", 3.0)] * 2 and seen == ["status"] * 2
    assert calls.stats.calls == {"status": 2}
    assert calls.stats.errors == {"ClusterUnavailableError": 1}
    await m2.close()
    waiting = asyncio.ensure_future(calls.call_on("status", m2, answers.invoke, 3.0))
    await clock.advance(3.0)
    with pytest.raises(ContextError) as raised:
        await waiting
    assert str(raised.value) == "m2:2379: deadline exceeded waiting for the connection"
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.endpoint == "m2:2379"


async def test_a_hedge_goes_to_another_member_after_hedge_after(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.queued["m0:2379"] = [HANG]
    calls, _ = sticky.caller()
    call = asyncio.ensure_future(
        calls.hedged("range", answers.invoke, timeout=5.0, hedge_after=1.0)
    )
    await clock.advance(1.0)
    assert await call == "m1:2379"
    assert answers.log == [("m0:2379", 5.0), ("m1:2379", 4.0)]
    assert calls.stats.hedges == 1
    # A primary that answers in time is not hedged.
    assert await calls.hedged("range", answers.invoke, timeout=5.0, hedge_after=1.0) == "m0:2379"
    assert calls.stats.hedges == 1 and len(answers.log) == 3


async def test_when_both_fail_the_primary_error_is_raised(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    primary = rpc_error(grpc.StatusCode.UNAVAILABLE, "primary down")
    answers.queued["m0:2379"] = [primary]
    answers.queued["m1:2379"] = [rpc_error(grpc.StatusCode.UNAVAILABLE, "hedge down")]
    calls, _ = sticky.caller()
    with pytest.raises(ClusterUnavailableError, match="primary down"):
        await calls.hedged("range", answers.invoke, timeout=5.0, hedge_after=1.0)
    assert calls.stats.hedges == 1
    for _ in range(2):
        answers.queued["m0:2379"] = [HANG]
        call = asyncio.ensure_future(
            calls.hedged("range", answers.invoke, timeout=None, hedge_after=1.0)
        )
        await clock.advance(1.0)
        await call
    assert calls.stats.hedges == 3


async def test_no_hedge_without_another_ready_member() -> None:
    async with members(ENDPOINTS[:1]) as alone:
        alone.answers.queued["m0:2379"] = [HANG]
        calls, _ = alone.caller()
        call = asyncio.ensure_future(
            calls.hedged("range", alone.answers.invoke, timeout=3.0, hedge_after=1.0)
        )
        await alone.clock.advance(3.0)
        with pytest.raises(ContextError):
            await call
        assert calls.stats.hedges == 0 and len(alone.answers.log) == 1


async def test_the_policy_hears_each_result_and_its_previous_wait(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.queued["m0:2379"] = [UNAVAILABLE, UNAVAILABLE]
    policy = Recording()  # waits previous + 1: 1 s, then 2 s
    calls, _ = sticky.caller(policy)
    call = asyncio.ensure_future(calls.call("range", answers.invoke, safe=True, timeout=10.0))
    await clock.advance(3.0)
    assert await call == "m0:2379"
    assert policy.calls == [
        ("call", None),
        ("result", False),
        ("delay", (1, 0.0)),
        ("result", False),
        ("delay", (2, 1.0)),
        ("result", True),
    ]
    assert [left for _, left in answers.log] == [10.0, 9.0, 7.0]


async def test_no_time_at_all_fails_before_the_first_attempt(
    sticky: Members,
) -> None:
    answers = sticky.answers
    calls, _ = sticky.caller()
    with pytest.raises(ContextError) as raised:
        await calls.call("range", answers.invoke, safe=True, timeout=0.0)
    assert str(raised.value) == "range: deadline exceeded before attempt 1"
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert answers.log == [] and calls.stats.errors == {"ContextError": 1}


async def test_waiting_for_a_connection_says_why_none_was_ready() -> None:
    network = FakeNetwork(FakeClock())
    for address in ENDPOINTS:
        network.behaviour[address] = "hang"
    async with members(network=network) as unreachable:
        answers = unreachable.answers
        calls, _ = unreachable.caller()
        call = asyncio.ensure_future(calls.call("range", answers.invoke, safe=True, timeout=2.0))
        hedged = asyncio.ensure_future(
            calls.hedged("range", answers.invoke, timeout=2.0, hedge_after=1.0)
        )
        await unreachable.clock.advance(2.0)
        why = unreachable.balancer.why_not_ready()
        for pending in (call, hedged):
            with pytest.raises(ContextError) as raised:
                await pending
            assert str(raised.value) == (
                f"range: deadline exceeded waiting for a ready connection ({why})"
            )
        assert calls.stats.hedges == 0 and answers.log == []


async def test_an_attempt_timeout_the_policy_will_not_retry_is_the_error(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.always["m0:2379"] = HANG
    calls, _ = sticky.caller(attempt_timeout=0.3)
    call = asyncio.ensure_future(calls.call("range", answers.invoke, safe=True, timeout=5.0))
    await clock.advance(0.3)
    with pytest.raises(ContextError) as raised:
        await call
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls.stats.errors == {"ContextError": 1}


@pytest.mark.parametrize(("timeout", "request_timeout", "expected"), [
    (None, None, 0.3), (0.2, None, 0.2), (None, 5.0, 0.3), (5.0, None, 0.3),
])  # fmt: skip
async def test_each_attempt_gets_the_lesser_of_what_is_left_and_the_attempt_timeout(
    sticky: Members,
    timeout: float | None,
    request_timeout: float | None,
    expected: float,
) -> None:
    answers = sticky.answers
    calls, _ = sticky.caller(attempt_timeout=0.3, request_timeout=request_timeout)
    await calls.call("range", answers.invoke, safe=True, timeout=timeout)
    assert answers.log == [("m0:2379", expected)]


async def test_a_connection_closed_before_the_call_went_out_is_retried_even_for_a_write(
    sticky: Members,
) -> None:
    answers = sticky.answers
    closed: list[str] = []

    async def invoke(channel: grpc.aio.Channel, left: float | None) -> str:
        if not closed:
            closed.append(cast(FakeChannel, channel).address)
            raise grpc.aio.UsageError("channel closed")
        return await answers.invoke(channel, left)

    calls, _ = sticky.caller(FixedDelay(0.0, max_attempts=3))
    with served_by() as served:
        assert await calls.call("put", invoke, safe=False, timeout=5.0) == "m0:2379"
    assert served.endpoint == "m0:2379" and calls.stats.retries == {"dial": 1}
    closed.clear()
    calls, _ = sticky.caller()
    with served_by() as served, pytest.raises(ClusterUnavailableError) as raised:
        await calls.call("put", invoke, safe=False, timeout=5.0)
    # It never went out: no member served it.
    assert served.endpoint is None
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.endpoint == "m0:2379"
    assert "m0:2379: connection closed before the call went out" in str(raised.value)


async def test_a_hedged_read_is_repeatable_and_its_deadline_is_the_configs(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.queued["m0:2379"] = [UNAVAILABLE]
    calls, seen = sticky.caller(FixedDelay(0.0, max_attempts=3), request_timeout=4.0)
    # The primary is a read: retried at once on its member, before any hedge.
    assert await calls.hedged("range", answers.invoke, timeout=None, hedge_after=1.0) == ("m0:2379")
    assert answers.log == [("m0:2379", 4.0), ("m0:2379", 4.0)] and calls.stats.hedges == 0
    # A hedge with exactly a second left is still sent; it gets that second.
    answers.queued["m0:2379"] = [HANG]
    call = asyncio.ensure_future(
        calls.hedged("range", answers.invoke, timeout=2.0, hedge_after=1.0)
    )
    await clock.advance(1.0)
    assert await call == "m1:2379" and answers.log[-1] == ("m1:2379", 1.0)
    assert calls.stats.calls == {"range": 2} and seen == ["range"] * 4


async def test_a_hedge_failing_first_waits_for_the_primary(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.queued["m0:2379"] = [HANG]
    answers.queued["m1:2379"] = [rpc_error(grpc.StatusCode.UNAVAILABLE, "hedge down")]
    calls, _ = sticky.caller()
    call = asyncio.ensure_future(
        calls.hedged("range", answers.invoke, timeout=3.0, hedge_after=1.0)
    )
    await clock.advance(1.0)
    assert not call.done()
    await clock.advance(2.0)
    with pytest.raises(ContextError):
        await call


async def test_the_primary_error_wins_even_when_the_hedge_fails_later(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.queued["m0:2379"] = [rpc_error(grpc.StatusCode.UNAVAILABLE, "primary down")]
    answers.queued["m1:2379"] = [HANG]
    calls, _ = sticky.caller()
    call = asyncio.ensure_future(
        calls.hedged("range", answers.invoke, timeout=3.0, hedge_after=1.0)
    )
    await clock.advance(3.0)
    with pytest.raises(ClusterUnavailableError, match="primary down"):
        await call


async def test_a_hedge_without_a_timeout_gets_what_is_left_of_the_configs(
    sticky: Members,
) -> None:
    clock, answers = sticky.clock, sticky.answers
    answers.queued["m0:2379"] = [HANG]
    calls, _ = sticky.caller(request_timeout=4.0)
    call = asyncio.ensure_future(
        calls.hedged("range", answers.invoke, timeout=None, hedge_after=1.0)
    )
    await clock.advance(1.0)
    assert await call == "m1:2379"
    assert answers.log == [("m0:2379", 4.0), ("m1:2379", 3.0)]


async def test_an_attempt_that_never_went_out_leaves_the_last_member_named(
    sticky: Members,
) -> None:
    answers = sticky.answers
    answers.queued["m0:2379"] = [UNAVAILABLE]

    async def invoke(channel: grpc.aio.Channel, left: float | None) -> str:
        if answers.log:
            raise grpc.aio.UsageError("channel closed")
        return await answers.invoke(channel, left)

    calls, _ = sticky.caller(FixedDelay(0.0, max_attempts=2))
    with served_by() as served, pytest.raises(ClusterUnavailableError):
        await calls.call("range", invoke, safe=True, timeout=5.0)
    assert served.endpoint == "m0:2379"  # the first attempt's member, which answered

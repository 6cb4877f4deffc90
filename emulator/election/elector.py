"""client-go's leader elector on an injected clock.

The state machine is ``tools/leaderelection``'s: an acquire loop retrying every
jittered ``retry_period``; once leading, a renew loop that retries a failing
renewal every ``retry_period`` and steps down when ``renew_deadline`` passes
without success. Each Get, Create or Update of the lock has its own deadline,
``request_timeout`` (the client's timeout ``resourcelock`` sets). Whether a
lease has expired is judged only by this candidate's clock, from the moment it
last saw the stored record change, and by the duration that record states.

Like client-go, this is not fencing: a renewal whose answer takes longer than
``lease_duration - renew_deadline - retry_period`` can keep a leader believing
after a follower has taken over. Guard the leader's writes with :meth:`fence`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from etcdlab.common.clock import Clock, MonotonicClock, within
from etcdlab.election.config import LeaderElectionConfig
from etcdlab.election.lock import LockNotFoundError, ResourceLock
from etcdlab.election.record import LeaderElectionRecord
from etcdlab.election.safety import Fence
from etcdlab.election.timing import jittered

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class LeaderCallbacks:
    on_started_leading: Callable[[], Coroutine[Any, Any, None]]
    """The leader's work: run as a task that is cancelled (and awaited) as soon as
    leadership ends, before ``on_stopped_leading``."""
    on_stopped_leading: Callable[[], None]
    """Called once when :meth:`LeaderElector.run` ends, whether it led or not."""
    on_new_leader: Callable[[str], None] | None = None
    """Called with the holder's identity whenever it differs from the last one
    reported (at first none): the first holder seen, ``""`` once a release is
    seen, the next holder."""


class LeadershipListener(Protocol):
    """Told, on the elector's clock, when its belief that it leads begins and ends."""

    def started_leading(self, identity: str, at: float, term: int) -> None: ...

    def renewed(self, identity: str, at: float) -> None: ...

    def stopped_leading(self, identity: str, at: float) -> None: ...


class LeaderElector:
    def __init__(
        self,
        config: LeaderElectionConfig,
        lock: ResourceLock,
        callbacks: LeaderCallbacks,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        listener: LeadershipListener | None = None,
    ) -> None:
        self.config = config
        self._lock = lock
        self._callbacks = callbacks
        self._clock = clock or MonotonicClock()
        self._rng = rng or random.Random()
        self._listener = listener
        # Record timestamps are wall time for readers of the key, advanced by the
        # injected clock so that a fake clock also moves them.
        self._wall_offset = time.time() - self._clock.now()
        self._observed_record: LeaderElectionRecord | None = None
        self._observed_raw: bytes | None = None
        self.observed_time: float | None = None
        """When (on this clock) the record was last seen to change."""
        # client-go's reportedLeader starts empty: no holder seen is nothing to report.
        self._reported_leader = ""
        self._leading = False
        self.term: int | None = None
        """Lock revision at which this candidate last acquired the lease."""
        self.attempts: list[float] = []
        """Clock times of acquisition attempts (to see the jitter)."""
        self.last_renewed: float | None = None
        """Clock time of the last successful acquire or renewal."""
        self.slow_path_renewals = 0
        """Renewals that needed the read-then-update path."""

    # -- what this candidate believes ---------------------------------------

    @property
    def leader(self) -> str:
        """The holder in the last observed record (``""`` if none)."""
        return self._observed_record.holder_identity if self._observed_record else ""

    @property
    def is_leader(self) -> bool:
        """The last observed record names this candidate."""
        return self.leader == self.config.identity

    @property
    def leading(self) -> bool:
        """Between a successful acquire and stepping down: the leader's belief."""
        return self._leading

    def fence(self) -> Fence:
        """What guards this leader's writes: the record unchanged since its last
        write. Taken after stepping down it is stale, and etcd refuses it."""
        revision = self._lock.revision
        if self.term is None or revision is None:
            raise RuntimeError(f"{self.config.identity} has never led")
        return Fence.on_record(self._lock.key, revision, self.term)

    # -- the loops ----------------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead until renewal fails, then return. Cancel to stop."""
        try:
            await self._acquire()
            await self._lead()
        finally:
            self._callbacks.on_stopped_leading()

    async def _acquire(self) -> None:
        while True:
            self.attempts.append(self._clock.now())
            acquired = await self._try_acquire_or_renew()
            self._maybe_report_transition()
            if acquired:
                return
            await self._clock.sleep(
                jittered(self.config.retry_period, self.config.jitter_factor, self._rng)
            )

    async def _lead(self) -> None:
        self._leading = True
        self.term = self._lock.revision
        if self._listener is not None:
            self._listener.started_leading(self.config.identity, self._clock.now(), self.term or 0)
        work = asyncio.create_task(self._callbacks.on_started_leading())
        try:
            await self._renew()
        finally:
            self._leading = False
            if self._listener is not None:
                self._listener.stopped_leading(self.config.identity, self._clock.now())
            work.cancel()
            await asyncio.wait((work,))
            if not work.cancelled() and work.exception() is not None:
                log.error("%s: leader work failed", self.config.identity, exc_info=work.exception())
            if self.config.release_on_cancel:
                await self._release()

    async def _renew(self) -> None:
        while True:
            try:
                await within(self._clock, self.config.renew_deadline, self._renew_until_success())
            except TimeoutError:
                log.info(
                    "%s: failed to renew %s within %gs, stepping down",
                    self.config.identity,
                    self._lock.describe(),
                    self.config.renew_deadline,
                )
                self._maybe_report_transition()
                return
            self._maybe_report_transition()
            await self._clock.sleep(self.config.retry_period)

    async def _renew_until_success(self) -> None:
        # wait.PollUntilContextTimeout: attempts retry_period apart, start to
        # start (its timer runs during an attempt), the next at once after a
        # longer attempt.
        while True:
            started = self._clock.now()
            if await self._try_acquire_or_renew():
                return
            spent = self._clock.now() - started
            await self._clock.sleep(max(0.0, self.config.retry_period - spent))

    async def _request(self, call: Coroutine[Any, Any, T]) -> T:
        """One lock request, abandoned after ``request_timeout``."""
        return await within(self._clock, self.config.request_timeout, call)

    # -- one attempt ----------------------------------------------------------

    async def _try_acquire_or_renew(self) -> bool:
        now = self._clock.now()
        wall = self._wall_offset + now
        mine = LeaderElectionRecord(
            holder_identity=self.config.identity,
            lease_duration_seconds=self.config.lease_duration,
            acquire_time=wall,
            renew_time=wall,
        )

        # Fast path: a leader assumes nobody wrote since its own last write.
        if self.is_leader and self._lease_valid(now) and self._observed_record is not None:
            renewal = dataclasses.replace(
                mine,
                acquire_time=self._observed_record.acquire_time,
                leader_transitions=self._observed_record.leader_transitions,
            )
            try:
                await self._request(self._lock.update(renewal))
            except Exception as error:
                log.info("%s: optimistic renew failed (%s), reading", self.config.identity, error)
            else:
                self._wrote(renewal)
                return True

        # Slow path: read, then decide.
        try:
            observed = await self._request(self._lock.get())
        except LockNotFoundError:
            try:
                await self._request(self._lock.create(mine))
            except Exception as error:
                log.info("%s: creating the record failed: %s", self.config.identity, error)
                return False
            self._wrote(mine)
            return True
        except Exception as error:
            log.info("%s: reading the record failed: %s", self.config.identity, error)
            return False

        if observed.raw != self._observed_raw:
            self._set_observed(observed.record)
            self._observed_raw = observed.raw
        held_by_other = bool(observed.record.holder_identity) and not self.is_leader
        if held_by_other and self._lease_valid(now):
            return False

        if self.is_leader:
            update = dataclasses.replace(
                mine,
                acquire_time=observed.record.acquire_time,
                leader_transitions=observed.record.leader_transitions,
            )
            self.slow_path_renewals += 1
        else:
            update = dataclasses.replace(
                mine, leader_transitions=observed.record.leader_transitions + 1
            )
        try:
            await self._request(self._lock.update(update))
        except Exception as error:
            log.info("%s: updating the record failed: %s", self.config.identity, error)
            return False
        self._wrote(update)
        return True

    async def _release(self) -> None:
        if not self.is_leader or self._observed_record is None:
            return
        wall = self._wall_offset + self._clock.now()
        released = LeaderElectionRecord(
            holder_identity="",
            lease_duration_seconds=1,
            acquire_time=wall,
            renew_time=wall,
            leader_transitions=self._observed_record.leader_transitions,
        )

        async def release() -> None:
            # Read first, as client-go does: the write swaps on the latest revision.
            await self._request(self._lock.get())
            await self._request(self._lock.update(released))

        try:
            await within(self._clock, self.config.renew_deadline, release())
        except Exception as error:
            log.info("%s: releasing the lease failed: %s", self.config.identity, error)
            return
        self._wrote(released)

    # -- bookkeeping ------------------------------------------------------------

    def _lease_valid(self, now: float) -> bool:
        # The duration the observed record states, as client-go's isLeaseValid.
        record = self._observed_record
        return (
            self.observed_time is not None
            and record is not None
            and self.observed_time + record.lease_duration_seconds > now
        )

    def _set_observed(self, record: LeaderElectionRecord) -> None:
        self._observed_record = record
        self.observed_time = self._clock.now()

    def _wrote(self, record: LeaderElectionRecord) -> None:
        self._set_observed(record)
        if record.holder_identity != self.config.identity:
            return
        self.last_renewed = now = self._clock.now()
        if self._leading and self._listener is not None:
            self._listener.renewed(self.config.identity, now)

    def _maybe_report_transition(self) -> None:
        if self.leader == self._reported_leader:
            return
        self._reported_leader = self.leader
        if self._callbacks.on_new_leader is not None:
            self._callbacks.on_new_leader(self.leader)

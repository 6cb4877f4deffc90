"""A background health checker like the apiserver's ``--etcd-healthcheck-timeout``.

It reads the health key through the client with ``health_check_timeout`` as
the deadline, starts at most one probe per ``health_check_interval``, and runs
in its own task: requests never wait for it. Its verdict, the last error and
every transition (with timestamps on the injected clock) are exposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from etcdlab.client.config import ClientConfig
from etcdlab.client.errors import EtcdError
from etcdlab.common.clock import Clock

if TYPE_CHECKING:
    from etcdlab.client.etcd import EtcdClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthTransition:
    at: float
    healthy: bool
    error: str | None


class HealthChecker:
    """Probes etcd through ``client`` until :meth:`close`.

    ``healthy`` is None until the first probe finishes.
    """

    def __init__(
        self,
        client: EtcdClient,
        config: ClientConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.config = config or client.config
        self.clock = clock or client.clock
        self.healthy: bool | None = None
        self.last_error: str | None = None
        self.last_change: float | None = None
        self.last_probe: float | None = None
        self.probes = 0
        self.probing = False
        """True while a probe is in flight."""
        self.history: list[HealthTransition] = []
        self._verdicts = {True: asyncio.Event(), False: asyncio.Event()}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.client.name} health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> HealthChecker:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def wait_until(self, healthy: bool) -> None:
        """Return once the verdict is ``healthy`` (at once if it already is)."""
        await self._verdicts[healthy].wait()

    async def probe(self) -> bool:
        """One probe; updates the verdict and returns it."""
        started = self.clock.now()
        self.last_probe = started
        self.probes += 1
        self.probing = True
        try:
            await self.client.get(
                self.config.health_key,
                count_only=True,
                timeout=self.config.health_check_timeout,
            )
        except EtcdError as error:
            self._record(False, f"{type(error).__name__}: {error}")
        else:
            self._record(True, None)
        finally:
            self.probing = False
        return bool(self.healthy)

    def _record(self, healthy: bool, error: str | None) -> None:
        if not healthy:
            self.last_error = error
        if healthy == self.healthy:
            return
        now = self.clock.now()
        self.healthy = healthy
        self.last_change = now
        self.history.append(HealthTransition(now, healthy, error))
        log.info(
            "%s: etcd %s%s",
            self.client.name,
            "healthy" if healthy else "unhealthy",
            f" ({error})" if error else "",
        )
        self._verdicts[healthy].set()
        self._verdicts[not healthy].clear()

    async def _run(self) -> None:
        while True:
            started = self.clock.now()
            await self.probe()
            rest = self.config.health_check_interval - (self.clock.now() - started)
            await self.clock.sleep(max(0.0, rest))

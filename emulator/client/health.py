"""The apiserver's etcd checks, as ``k8s.io/apiserver`` builds them.

``storagebackend/factory/etcd3.go`` (``newETCD3Check``) gives the livez check
``etcd`` (``--etcd-healthcheck-timeout``, 2 s) and the readyz check
``etcd-readiness`` (``--etcd-readycheck-timeout``, 2 s) the same shape, each
with its own etcd client:

* a probe is a linearizable read of ``<prefix>/health`` with the check's timeout;
* a rate limiter lets one probe through per half timeout (burst 1); a check
  asked in between answers the result of the last probe *sent* (not the last
  answered), at once;
* until its client has connected, the check answers "etcd client connection
  not yet established".

Checks run only when asked (a prober polling livez or readyz); they never
stand in the way of requests, which go through the apiserver's other client.
"""

from __future__ import annotations

from collections.abc import Callable

from etcdlab.client.errors import EtcdError
from etcdlab.client.etcd import EtcdClient
from etcdlab.common.clock import Clock
from etcdlab.common.tokenbucket import TokenBucket

LIVEZ = "etcd"
READYZ = "etcd-readiness"
NOT_ESTABLISHED = "etcd client connection not yet established"


class EtcdCheck:
    """One named check over its own ``client``; see the module docstring."""

    def __init__(self, name: str, client: EtcdClient, timeout: float, key: bytes) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.name = name
        self.client = client
        self.timeout = timeout
        self.key = key
        self.probes = 0
        self._clock = client.clock
        self._limiter = TokenBucket(2 / timeout, self._clock)  # one probe per half timeout
        self._last_error: str | None = NOT_ESTABLISHED
        self._last_sent: float | None = None

    async def check(self) -> str | None:
        """None when healthy, else why not."""
        if not self.client.has_connected:
            self.client.start()
            return NOT_ESTABLISHED
        if not self._limiter.allow():
            return self._last_error
        sent = self._clock.now()
        self.probes += 1
        try:
            await self.client.get(self.key, timeout=self.timeout)
        except EtcdError as error:
            result: str | None = f"error getting data from etcd: {error}"
        else:
            result = None
        # Probes may overlap: the one sent last decides what is answered in between.
        if self._last_sent is None or self._last_sent < sent:
            self._last_error, self._last_sent = result, sent
        return result


async def poll(
    check: EtcdCheck, interval: float, clock: Clock, report: Callable[[str | None], None]
) -> None:
    """Ask ``check`` every ``interval`` (start to start, or at once after a
    longer probe) and ``report`` each answer, until cancelled."""
    while True:
        started = clock.now()
        report(await check.check())
        await clock.sleep(max(0.0, interval - (clock.now() - started)))

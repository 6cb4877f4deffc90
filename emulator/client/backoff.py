"""gRPC's connection backoff and the jitter clientv3 spreads waits with.

:class:`ConnectionBackoff` is gRPC's (``internal/backoff``, after
``doc/connection-backoff.md``): the wait after the n-th consecutive failed
connection attempt is ``base * multiplier**n``, capped, spread uniformly by
+- ``jitter`` except after the first failure, which waits exactly ``base``.
Each attempt is given ``max(min_connect_timeout, that wait)`` to connect.
Randomness comes from a seeded ``random.Random`` so runs repeat.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etcdlab.client.config import ClientConfig


class ConnectionBackoff:
    @classmethod
    def of(cls, config: ClientConfig, rng: random.Random) -> ConnectionBackoff:
        """The backoff ``config``'s ``reconnect_backoff_*`` and ``min_connect_timeout`` give."""
        return cls(
            base=config.reconnect_backoff_base,
            multiplier=config.reconnect_backoff_multiplier,
            jitter=config.reconnect_backoff_jitter,
            cap=config.reconnect_backoff_cap,
            min_connect_timeout=config.min_connect_timeout,
            rng=rng,
        )

    def __init__(
        self,
        *,
        base: float,
        multiplier: float,
        jitter: float,
        cap: float,
        min_connect_timeout: float,
        rng: random.Random,
    ) -> None:
        self.base = base
        self.multiplier = multiplier
        self.jitter = jitter
        self.cap = cap
        self.min_connect_timeout = min_connect_timeout
        self._rng = rng

    def delay(self, retries: int) -> float:
        """The wait after a failed attempt when ``retries`` attempts failed before it."""
        if retries == 0:
            return self.base
        backoff = self.base
        # Grow one step at a time, as gRPC does, so the cap stops the growth.
        while backoff < self.cap and retries > 0:
            backoff *= self.multiplier
            retries -= 1
        return jitter_up(min(backoff, self.cap), self.jitter, self._rng)

    def connect_timeout(self, backoff: float) -> float:
        """How long an attempt followed by ``backoff`` (if it fails) may take to connect."""
        return max(self.min_connect_timeout, backoff)


def jitter_up(duration: float, fraction: float, rng: random.Random) -> float:
    """``duration`` spread uniformly over ``[1 - fraction, 1 + fraction)`` times itself."""
    return duration * (1 + fraction * (rng.random() * 2 - 1))

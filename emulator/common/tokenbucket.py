"""Go's ``rate.Limiter`` (``golang.org/x/time/rate``) on an injected clock.

Both users take it from here: the apiserver's etcd checks let one probe
through per half timeout (:meth:`TokenBucket.allow`), and client-go's
workqueue bucket limiter reserves a token and waits out the debt
(:meth:`TokenBucket.reserve`).
"""

from __future__ import annotations

from etcdlab.common.clock import Clock


class TokenBucket:
    """At most ``burst`` tokens, ``rate`` of them back per second; starts full.

    ``rate.NewLimiter(rate.Every(interval), burst)`` is ``TokenBucket(1 / interval, ...)``.
    """

    def __init__(self, rate: float, clock: Clock, burst: int = 1) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock.now()

    def _refill(self) -> None:
        now = self._clock.now()
        # As Go does: the tokens an elapsed time is worth are time times rate.
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def allow(self) -> bool:
        """``Allow``: take a token if there is one."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def reserve(self) -> float:
        """``Reserve().Delay()``: take a token, going into debt if there is none,
        and return how long the caller must wait for it (0 if it was there)."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

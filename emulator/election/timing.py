"""client-go's jittered waits (``wait.Jitter``)."""

from __future__ import annotations

import random


def jittered(period: float, factor: float, rng: random.Random) -> float:
    """``wait.Jitter``: ``period`` stretched by up to ``factor`` times itself."""
    return period * (1.0 + rng.random() * factor)

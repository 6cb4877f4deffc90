"""The one time-scale rule: every duration is multiplied by one factor, once.

Tests and demos shrink every timeout of a run by the same factor so that the
ratio of network delay to client timeout stays the real one (DESIGN.md, "Time
scaling must scale the network too"). The factor is checked here, in one
place, and each component receives its configuration already scaled at the
edge; the report turns run seconds back into real ones with :meth:`unscaled`.
"""

from __future__ import annotations

import math

MESSAGE = "must be a positive finite number"


class TimeScale(float):
    """A validated time-scale factor: ``0 < factor < inf``, NaN rejected.

    A ``float`` so it can stand wherever a factor was a float; construction is
    the check. ``field`` names the setting in the error message.
    """

    def __new__(cls, value: float | str, field: str = "time_scale") -> TimeScale:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{field} {MESSAGE}, got {value!r}") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{field} {MESSAGE}, got {value!r}")
        return super().__new__(cls, number)

    def scaled(self, seconds: float) -> float:
        """Real seconds -> seconds on the scaled run's clock."""
        return seconds * self

    def unscaled(self, seconds: float) -> float:
        """Seconds on the scaled run's clock -> the real seconds they stand for."""
        return seconds / self


UNSCALED = TimeScale(1.0)

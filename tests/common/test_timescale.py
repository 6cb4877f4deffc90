from __future__ import annotations

import argparse
import math

import pytest

from etcdlab.common.argtypes import time_scale
from etcdlab.common.timeline import Timeline
from etcdlab.common.timescale import TimeScale


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, "ten", None])
def test_a_factor_outside_zero_to_infinity_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^--time-scale must be a positive finite number"):
        TimeScale(bad, "--time-scale")  # type: ignore[arg-type]


def test_scaled_and_unscaled_are_inverse() -> None:
    scale = TimeScale("0.2")
    assert scale.scaled(10.0) == pytest.approx(2.0)
    assert scale.unscaled(scale.scaled(7.5)) == pytest.approx(7.5)
    assert isinstance(scale, float) and scale == 0.2


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "ten"])
def test_the_command_line_and_the_timeline_apply_the_same_rule(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be a positive finite number"):
        time_scale(bad)
    with pytest.raises(ValueError, match=r"^time_scale must be a positive finite number"):
        Timeline("t", seed=0, time_scale=bad)  # type: ignore[arg-type]
    assert time_scale("0.5") == 0.5 and isinstance(time_scale("0.5"), TimeScale)


def test_the_timeline_converts_run_seconds_through_its_scale() -> None:
    timeline = Timeline("t", seed=0, time_scale=TimeScale(0.25))
    assert timeline.unscaled(1.0) == 4.0 and timeline.scaled(4.0) == 1.0
    assert timeline.run_time_at(8.0, since=10.0) == 12.0

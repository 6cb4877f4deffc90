"""What the scenario sweeps share: the bounds figures are compared within."""

from __future__ import annotations

import math

from etcdlab.bench.sweep import agrees, flatten


def test_bounds_are_a_quarter_or_a_small_absolute_slack() -> None:
    assert agrees("lease_losses", 10, 12.5) and not agrees("lease_losses", 10, 13)
    assert agrees("lease_losses", 0, 2) and not agrees("lease_losses", 0, 3)
    assert agrees("detect_seconds.first", 2.0, 3.0) and not agrees("detect_seconds.first", 2, 3.1)
    assert agrees("recover_seconds.members_healthy", 0.5, 1.4)
    assert agrees("latency.fault.p99", 0.001, 0.006) and not agrees(
        "latency.fault.p99", 0.001, 0.0061
    )
    assert not agrees("latency.fault.p99", 1.0, 1.3)
    assert agrees("latency.fault.requests", 100, 125) and not agrees("latency.fault.requests", 0, 3)


def test_never_agrees_only_with_never_and_missing_figures_are_not_judged() -> None:
    assert agrees("detect_seconds.error", math.inf, math.inf)
    assert not agrees("detect_seconds.error", math.inf, 30.0)
    assert not agrees("recover_seconds.members_healthy", 1.0, math.inf)
    assert agrees("latency.event_loop_lag.p99", math.nan, 0.5)


def test_flatten_names_nested_figures_and_turns_none_into_never() -> None:
    flat = flatten({"a": 1, "b": {"c": None, "d": {"e": 2.5}}})
    assert flat == {"a": 1.0, "b.c": math.inf, "b.d.e": 2.5}

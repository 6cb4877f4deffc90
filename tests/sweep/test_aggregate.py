"""Aggregation over seeds and the recommendation, on synthetic results."""

from __future__ import annotations

import csv
import io
from typing import Any

from etcdlab.sweep import page
from etcdlab.sweep.aggregate import recommend, spread, summary
from etcdlab.sweep.grid import Grid
from etcdlab.sweep.metrics import METRICS
from etcdlab.sweep.settings import BUILTINS

GRID = Grid(losses=(0, 30), targets=("leader", "follower"), settings=tuple(BUILTINS.values()),
            seeds=2, duration=60)  # fmt: skip
# (network key, settings) -> lease losses per hour and failover seconds, per seed.
LOSSES = {
    ("loss-0", "client-go"): (0, 0), ("loss-0", "openshift"): (0, 0), ("loss-0", "tight"): (0, 60),
    ("loss-30-leader", "client-go"): (60, 120), ("loss-30-follower", "client-go"): (0, 60),
    ("loss-30-leader", "openshift"): (0, 0), ("loss-30-follower", "openshift"): (0, 0),
    ("loss-30-leader", "tight"): (240, 180), ("loss-30-follower", "tight"): (60, 60),
}  # fmt: skip
FAILOVER = {"client-go": (9.0, 14.0), "openshift": (95.0, 130.0), "tight": (4.0, 6.0)}


def records() -> list[dict[str, Any]]:
    found = []
    for cell in GRID.cells():
        network, settings = cell.group
        index = cell.seed - GRID.first_seed
        metrics: dict[str, float | None] = {m.name: 1.0 for m in METRICS}
        if network == "dead-leader":
            metrics["failover_seconds"] = FAILOVER[settings][index]
        else:
            metrics["lease_losses_per_hour"] = LOSSES[(network, settings)][index]
        metrics["error_rate"] = None  # no request reached etcd: not measured
        found.append({"key": cell.key, "spec": cell.spec(), "metrics": metrics, "lagged": False})
    return found


def test_spread_is_mean_min_max_of_what_was_measured() -> None:
    assert spread([1.0, None, 3.0]) == {"mean": 2.0, "min": 1.0, "max": 3.0, "values": [1, 3]}
    assert spread([None]) is None


def test_each_cell_has_every_figure_over_its_seeds() -> None:
    result = summary(GRID, records(), max_failover=60)
    assert result["runs"] == {"planned": 24, "done": 24, "missing": [], "failed": []}
    by = {(c["network"], c["settings"]): c for c in result["cells"]}
    leader = by[("loss-30-leader", "client-go")]
    assert leader["seeds"] == [0, 1] and leader["label"] == "30% leader"
    assert leader["metrics"]["lease_losses_per_hour"] == {
        "mean": 90.0, "min": 60.0, "max": 120.0, "values": [60, 120],
    }  # fmt: skip
    assert leader["metrics"]["error_rate"] is None


def test_the_fewest_lease_losses_among_sets_whose_worst_failover_is_in_bound() -> None:
    result = summary(GRID, records(), max_failover=60)
    by_loss = {r["loss_percent"]: r for r in result["recommendations"]}
    # OpenShift loses no lease but its failover (130 s at worst) is over the bound.
    assert by_loss[30]["excluded"] == {"openshift": "failover 130.0 s > 60 s"}
    # client-go: the worse target has 90 per hour; tight 210.
    assert by_loss[30]["settings"] == "client-go"
    assert by_loss[30]["lease_losses_per_hour"] == 90.0
    assert by_loss[30]["failover_seconds"] == 14.0
    assert [r["settings"] for r in by_loss[30]["ranking"]] == ["client-go", "tight"]
    # At 0% tight lost leases (30 per hour); client-go and OpenShift none, and
    # OpenShift's failover is out of bounds.
    assert by_loss[0]["settings"] == "client-go"
    # A looser bound lets OpenShift in, and it wins at 30%.
    looser = summary(GRID, records(), max_failover=200)["recommendations"]
    assert {r["loss_percent"]: r["settings"] for r in looser} == {0: "client-go", 30: "openshift"}


def test_no_set_qualifies_when_every_failover_is_over_the_bound() -> None:
    result = summary(GRID, records(), max_failover=1)
    assert all(r["settings"] is None for r in result["recommendations"])


def test_without_dead_member_cells_failover_is_not_measured() -> None:
    grid = Grid(**{**GRID.__dict__, "dead_member": False})
    kept = [r for r in records() if not r["key"].startswith("dead")]
    rec = summary(grid, kept, max_failover=1)["recommendations"]
    assert [(r["settings"], r["failover_measured"]) for r in rec] == [
        ("client-go", False), ("openshift", False),
    ]  # fmt: skip


def test_a_partial_sweep_recommends_only_from_measured_cells() -> None:
    kept = [r for r in records() if r["key"] != "loss-30-follower/client-go/seed-0"]
    kept = [r for r in kept if r["key"] != "loss-30-follower/client-go/seed-1"]
    result = summary(GRID, kept, max_failover=60)
    assert result["runs"]["done"] == 22
    assert result["runs"]["missing"] == [
        "loss-30-follower/client-go/seed-0", "loss-30-follower/client-go/seed-1",
    ]  # fmt: skip
    at30 = result["recommendations"][1]
    assert at30["settings"] == "tight"
    assert at30["excluded"]["client-go"] == "not every target measured yet"


def test_recommend_breaks_ties_on_readyz_failures() -> None:
    entries = summary(GRID, records(), max_failover=60)["cells"]
    for entry in entries:
        if entry["settings"] == "tight" and entry["network"] == "loss-0":
            entry["metrics"]["lease_losses_per_hour"]["mean"] = 0.0
            entry["metrics"]["readyz_failures_per_hour"]["mean"] = 0.5
    at0 = recommend(GRID, entries, max_failover=60)[0]
    assert at0["settings"] == "tight"


def test_csv_and_page_show_every_cell() -> None:
    result = summary(GRID, records(), max_failover=60)
    rows = list(csv.DictReader(io.StringIO(page.to_csv(result))))
    assert len(rows) == 12
    leader = next(r for r in rows if r["network"] == "loss-30-leader" and r["settings"] == "tight")
    assert float(leader["lease_losses_per_hour_mean"]) == 210
    assert float(leader["lease_losses_per_hour_max"]) == 240
    assert leader["error_rate_mean"] == ""
    html = page.to_html(result)
    assert html.count("<svg") == len(METRICS)
    assert "tight, 30% leader: lease losses 210 per hour (mean of 2 seeds; 180 to 240)" in html
    assert "<b>client-go</b>" in html and "openshift: failover 130.0 s &gt; 60 s" in html
    assert "Incomplete" not in html


def test_a_set_whose_successor_did_not_lead_within_the_run_is_excluded() -> None:
    runs = records()
    for run in runs:
        if run["key"] == "dead-leader/client-go/seed-1":
            run["metrics"]["failover_seconds"] = None
            run["successor"] = False
    result = summary(GRID, runs, max_failover=60)
    dead = next(c for c in result["cells"] if c["network"] == "dead-leader" and
                c["settings"] == "client-go")  # fmt: skip
    assert dead["no_successor_runs"] == 1
    assert dead["metrics"]["failover_seconds"]["values"] == [9.0]
    at30 = result["recommendations"][1]
    assert at30["excluded"]["client-go"] == "no successor within the 60 s run"
    assert at30["settings"] == "tight"
    # The heatmap says the failover is longer than the run, and why on hover.
    html = page.to_html(result)
    assert (
        "client-go, dead leader: failover, or longest time without a leader no successor "
        "within the 60 s run in 1 of 2 seeds" in html
    )
    assert ">&gt; 60</text>" in html

"""From runs to cells and recommendations: each figure's mean and spread over
the seeds, and per loss level the settings set with the fewest lease losses
whose failover time stays under the bound.

A loss level's lease losses are the worse of its targets (leader, follower):
a recommendation must hold whichever member suffers. A set's failover time is
the worst seed of its dead-member cell (:mod:`~etcdlab.sweep.failover`); a set
whose successor did not lead within a run's window is excluded (its failover
is longer than the run); without dead-member runs no set is excluded and the
recommendation says failover was not measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from etcdlab.sweep.grid import DEAD, Grid, Network
from etcdlab.sweep.metrics import FAILOVER, METRICS


def spread(values: Iterable[float | None]) -> dict[str, Any] | None:
    """Mean, min, max and the values over the seeds that measured it; None if none did."""
    measured = [v for v in values if v is not None]
    if not measured:
        return None
    return {
        "mean": statistics.fmean(measured),
        "min": min(measured),
        "max": max(measured),
        "values": measured,
    }


def cells(grid: Grid, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (network, settings) of the grid with the runs it has."""
    planned = {cell.key: cell for cell in grid.cells()}
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        cell = planned.get(record["key"])
        if cell is not None:
            by_group.setdefault(cell.group, []).append(record)
    found = []
    for network in grid.networks():
        for settings in grid.settings:
            runs = sorted(
                by_group.get((network.key, settings.name), []), key=lambda r: r["spec"]["seed"]
            )
            found.append(
                {
                    "network": network.key,
                    "label": network.label,
                    "kind": network.kind,
                    "loss_percent": network.loss,
                    "target": network.target,
                    "settings": settings.name,
                    "seeds": [r["spec"]["seed"] for r in runs],
                    "lagged_runs": sum(bool(r.get("lagged")) for r in runs),
                    # Dead member: runs in which no successor led within the window.
                    "no_successor_runs": sum(r.get("successor") is False for r in runs),
                    "metrics": {
                        m.name: spread(r["metrics"].get(m.name) for r in runs) for m in METRICS
                    },
                    "overlapping_leaders": sum(
                        r["metrics"].get("overlapping_leaders") or 0 for r in runs
                    ),
                }
            )
    return found


def _mean(cell: dict[str, Any], metric: str) -> float | None:
    figure = cell["metrics"][metric]
    return None if figure is None else float(figure["mean"])


def recommend(
    grid: Grid, entries: Sequence[dict[str, Any]], max_failover: float
) -> list[dict[str, Any]]:
    """Per loss level: the set with the fewest lease losses (then the fewest
    readyz failures, then the lowest p99) among those whose failover stays
    within ``max_failover`` seconds."""
    by = {(e["network"], e["settings"]): e for e in entries}
    names = [s.name for s in grid.settings]
    failover: dict[str, float | None] = {}
    stuck: set[str] = set()  # sets whose dead-member cell saw no successor in a run
    if grid.dead_member:
        dead = Network(DEAD, 0, "leader").key
        for name in names:
            entry = by[(dead, name)]
            figure = entry["metrics"][FAILOVER]
            failover[name] = None if figure is None else float(figure["max"])
            if entry["no_successor_runs"]:
                stuck.add(name)
    found = []
    for loss in sorted(grid.losses):
        networks = [n for n in grid.networks() if n.kind != DEAD and n.loss == loss]
        excluded: dict[str, str] = {}
        ranked = []
        for name in names:
            if grid.dead_member:
                worst = failover[name]
                if name in stuck:
                    excluded[name] = f"no successor within the {grid.duration:g} s run"
                    continue
                if worst is None:
                    excluded[name] = "failover not measured yet"
                    continue
                if worst > max_failover:
                    excluded[name] = f"failover {worst:.1f} s > {max_failover:g} s"
                    continue
            cells_here = [by[(n.key, name)] for n in networks]
            losses = [_mean(c, "lease_losses_per_hour") for c in cells_here]
            if any(v is None for v in losses):
                excluded[name] = "not every target measured yet"
                continue
            readyz = [_mean(c, "readyz_failures_per_hour") or 0.0 for c in cells_here]
            p99 = [_mean(c, "p99_seconds") or 0.0 for c in cells_here]
            ranked.append((max(v or 0.0 for v in losses), max(readyz), max(p99), name))
        best = min(ranked) if ranked else None
        found.append(
            {
                "loss_percent": loss,
                "settings": None if best is None else best[3],
                "lease_losses_per_hour": None if best is None else best[0],
                "readyz_failures_per_hour": None if best is None else best[1],
                "failover_seconds": None if best is None else failover.get(best[3]),
                "failover_measured": grid.dead_member,
                "ranking": [
                    {"settings": r[3], "lease_losses_per_hour": r[0]} for r in sorted(ranked)
                ],
                "excluded": excluded,
            }
        )
    return found


def summary(
    grid: Grid,
    records: Iterable[dict[str, Any]],
    max_failover: float,
    failed: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """What ``sweep.json`` holds."""
    records = list(records)
    entries = cells(grid, records)
    planned = [cell.key for cell in grid.cells()]
    have = {r["key"] for r in records}
    return {
        "grid": grid.describe(),
        "max_failover_seconds": max_failover,
        "runs": {
            "planned": len(planned),
            "done": sum(key in have for key in planned),
            "missing": [key for key in planned if key not in have],
            "failed": list(failed),
        },
        "metrics": {m.name: {"label": m.label, "unit": m.unit} for m in METRICS},
        "cells": entries,
        "recommendations": recommend(grid, entries, max_failover),
    }

"""``etcdlab sweep --latency/--jitter``: the conditions and keys it makes, the resume
file it refuses, what the outputs call it, and its bad options."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from etcdlab.cli.main import main
from etcdlab.sweep import aggregate, page
from etcdlab.sweep.grid import QUICK, Cell, Grid, Network, parse_latency
from etcdlab.sweep.results import Results
from etcdlab.sweep.settings import BUILTINS

SLOW = Grid(losses=(0, 30), settings=(BUILTINS["tight"],), seeds=1, duration=20, latency=0.05,
            jitter=0.01)  # fmt: skip


def test_every_loss_level_adds_the_latency_on_the_same_member() -> None:
    assert [(n.key, n.label) for n in SLOW.networks()] == [
        ("loss-0-latency-50ms-jitter-10ms-leader", "0% +50±10ms leader"),
        ("loss-0-latency-50ms-jitter-10ms-follower", "0% +50±10ms follower"),
        ("loss-30-latency-50ms-jitter-10ms-leader", "30% +50±10ms leader"),
        ("loss-30-latency-50ms-jitter-10ms-follower", "30% +50±10ms follower"),
        ("dead-leader", "dead leader"),  # no proxies there: no latency
    ]
    cells = list(SLOW.cells())
    assert cells[2].key == "loss-30-latency-50ms-jitter-10ms-leader/tight/seed-0"
    loss, slow = cells[2].scenario().faults
    assert (loss.kind, loss.probability, loss.target, loss.at, loss.duration) == (
        "loss", 0.3, "leader", 0, 20,
    )  # fmt: skip
    assert (slow.kind, slow.latency, slow.jitter, slow.target, slow.at, slow.duration) == (
        "latency", 0.05, 0.01, "leader", 0, 20,
    )  # fmt: skip
    (alone,) = cells[1].scenario().faults
    assert (alone.kind, alone.target) == ("latency", "follower")
    assert Cell.from_spec(cells[2].spec()) == cells[2]
    # Without jitter the key says so; without latency the keys are as before.
    assert Network("loss", 5, "leader", 0.2).key == "loss-5-latency-200ms-leader"
    assert [n.key for n in Grid(losses=(0, 30), targets=("leader",)).networks()] == [
        "loss-0", "loss-30-leader", "dead-leader",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Network("loss", 0, None, 0.05), "target must be one of leader, follower"),
        (lambda: Network("loss", 5, "leader", 0.05, 0.06), r"jitter: must be from 0 up to"),
        (lambda: Network("loss", 5, "leader", -0.05), "latency: must be a finite duration >= 0"),
        (lambda: Network("dead", 0, "leader", 0.05), "a dead member has no latency"),
        (lambda: Grid(latency=0.05, targets=()), "targets: give leader, follower or both"),
        (lambda: Grid(latency=0.0, jitter=0.01), r"jitter: must be from 0 up to the latency"),
    ],
)
def test_a_bad_latency_names_what_is_wrong(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_options_need_a_unit_as_etcdlab_proxy_does() -> None:
    assert parse_latency("50ms", "10ms") == (0.05, 0.01)
    assert parse_latency("0.2s", None) == (0.2, 0.0)
    assert parse_latency(None, None) == (0.0, 0.0)


def test_a_resume_file_of_another_latency_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resume.jsonl"
    faster = Grid(**{**SLOW.__dict__, "latency": 0.02, "jitter": 0.0})
    cell = next(c for c in faster.cells() if c.network.kind == "loss")
    Results(path).add({"key": cell.key, "spec": cell.spec()})
    refused = (
        "was run with latency 20 ms, jitter 0 ms, this sweep asks for latency 50 ms, "
        "jitter 10 ms; choose another --out"
    )
    with pytest.raises(ValueError, match=refused):
        Results(path).check(SLOW.cells())
    Results(path).check(faster.cells())
    # A file of runs without latency (written before it existed) reads as latency 0.
    plain = tmp_path / "plain.jsonl"
    old = next(QUICK.cells())
    spec = old.spec()
    network = {k: v for k, v in spec["network"].items() if k not in ("latency", "jitter")}
    Results(plain).add({"key": old.key, "spec": {**spec, "network": network}})
    Results(plain).check(QUICK.cells())
    with pytest.raises(ValueError, match="was run with latency 0 ms, jitter 0 ms"):
        Results(plain).check(Grid(**{**QUICK.__dict__, "latency": 0.05}).cells())
    # The dead member's runs have no latency: any latency's sweep may reuse them.
    dead = tmp_path / "dead.jsonl"
    kill = next(c for c in QUICK.cells() if c.network.kind == "dead")
    Results(dead).add({"key": kill.key, "spec": kill.spec()})
    Results(dead).check(SLOW.cells())


def test_the_outputs_name_the_latency() -> None:
    summary = aggregate.summary(SLOW, [], 60.0)
    assert (summary["grid"]["latency_seconds"], summary["grid"]["jitter_seconds"]) == (0.05, 0.01)
    assert {r["latency_seconds"] for r in summary["recommendations"]} == {0.05}
    rows = list(csv.DictReader(io.StringIO(page.to_csv(summary))))
    assert [(r["network"], r["latency_seconds"], r["jitter_seconds"]) for r in rows] == [
        (n.key, "0.05" if n.kind == "loss" else "", "0.01" if n.kind == "loss" else "")
        for n in SLOW.networks()
    ]
    html = page.to_html(summary)
    assert "30% +50±10ms leader" in html
    assert "<td>30% + 50 ms ± 10 ms latency</td>" in html
    assert "Per loss level (+ 50 ms ± 10 ms latency on the same member)" in html
    assert json.loads(json.dumps(summary)) == summary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency", "50"], "--latency: a duration needs a unit (ms, s or m), like 50ms"),
        (["--latency", "soon"], "--latency: not a duration (like 50ms, 1.5s): 'soon'"),
        (["--latency=-5ms"], "--latency: must not be negative, not '-5ms'"),
        # Apart as well: a minus and a digit make a value, not an unknown option.
        (["--latency", "-5ms"], "--latency: must not be negative, not '-5ms'"),
        (["--jitter", "10ms"], "--jitter: needs --latency (the jitter is around it)"),
        (["--latency", "50ms", "--jitter", "60ms"], "--jitter: must be from 0 up to the latency"),
        (["--latency", "50ms", "--jitter", "10"], "--jitter: a duration needs a unit"),
    ],
)
def test_bad_latency_options_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", "--quick", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"etcdlab sweep: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_resume_file_of_another_latency_is_refused_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    cell = next(c for c in QUICK.cells() if c.network.loss)
    Results(out / "resume.jsonl").add({"key": cell.key, "spec": cell.spec()})
    assert main(["sweep", "--quick", "--latency", "50ms", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{cell.key} was run with latency 0 ms, jitter 0 ms, this sweep asks for " in err
    assert err.count("\n") == 1

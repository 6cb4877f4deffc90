"""The grid: which runs a sweep makes, their keys, and the options that shape it."""

from __future__ import annotations

import pytest

from etcdlab.sweep.grid import QUICK, Cell, Grid, Network, parse_losses, parse_names
from etcdlab.sweep.settings import BUILTINS


def test_the_full_grid_is_every_loss_on_leader_and_follower_plus_a_dead_leader() -> None:
    grid = Grid()
    labels = [n.label for n in grid.networks()]
    assert labels == [
        "0%", "5% leader", "5% follower", "10% leader", "10% follower", "20% leader",
        "20% follower", "30% leader", "30% follower", "50% leader", "50% follower",
        "dead leader",
    ]  # fmt: skip
    cells = list(grid.cells())
    assert len(cells) == 12 * 3 * 3
    assert len({c.key for c in cells}) == len(cells)
    # Seed by seed: a stopped sweep has a first result for every cell soonest.
    assert {c.seed for c in cells[: 12 * 3]} == {0}


def test_a_lossy_cell_is_a_scenario_of_its_loss_for_its_whole_length() -> None:
    lossy = Cell(Network("loss", 30, "follower"), BUILTINS["tight"], 2, 60, 0.75)
    assert lossy.key == "loss-30-follower/tight/seed-2"
    (step,) = lossy.scenario().faults
    assert (step.kind, step.target, step.probability, step.at, step.duration) == (
        "loss", "follower", 0.3, 0, 60,
    )  # fmt: skip
    assert lossy.scenario().duration == 60
    assert Cell(Network(), BUILTINS["tight"], 0, 60, 1).scenario().faults == ()
    dead = Cell(Network("dead", 0, "leader"), BUILTINS["tight"], 0, 60, 1)
    with pytest.raises(ValueError, match=r"measured by etcdlab\.sweep\.failover"):
        dead.scenario()
    assert Cell.from_spec(lossy.spec()) == lossy


def test_networks_are_checked() -> None:
    with pytest.raises(ValueError, match="target must be one of leader, follower"):
        Network("loss", 10)
    with pytest.raises(ValueError, match="a loss of 0 has no target"):
        Network("loss", 0, "leader")
    with pytest.raises(ValueError, match=r"loss must be a percentage in \[0, 100\), not 100"):
        Network("loss", 100, "leader")


def test_quick_is_small() -> None:
    assert len(list(QUICK.cells())) <= 18


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"losses": ()}, "losses: give at least one"),
        ({"losses": (0, 0)}, "losses: a loss level is given twice"),
        ({"losses": (120,)}, r"losses: 120 is not a percentage"),
        ({"targets": ("leder",)}, "targets: must be leader or follower, not 'leder'"),
        ({"seeds": 0}, "seeds: at least 1"),
        ({"duration": 0}, "duration: must be above 0"),
        ({"time_scale": 0.01}, "time scale"),
        ({"settings": (BUILTINS["tight"], BUILTINS["tight"])}, "settings: a set is named twice"),
    ],
)
def test_a_bad_grid_names_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Grid(**changes)  # type: ignore[arg-type]


def test_option_lists_name_the_option() -> None:
    assert parse_losses("0, 5%,12.5") == (0, 5, 12.5)
    with pytest.raises(ValueError, match="--loss: 'lots' is not a number"):
        parse_losses("5,lots")
    with pytest.raises(ValueError, match=r"--loss: 100 is not a percentage in \[0, 100\)"):
        parse_losses("100")
    assert parse_names("--target", "leader, follower", ("leader", "follower")) == (
        "leader",
        "follower",
    )
    with pytest.raises(ValueError, match="--settings: unknown 'mine'; one of a, b"):
        parse_names("--settings", "a,mine", ("a", "b"))
    with pytest.raises(ValueError, match="--target: give at least one"):
        parse_names("--target", ",", ("leader",))

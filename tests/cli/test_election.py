"""``etcdlab election`` end to end on a real cluster, and its input errors."""

from __future__ import annotations

import json
import re

import pytest

from etcdlab.cli.main import main


def test_pause_with_pinned_clients_reports_one_clean_failover(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["election", "--time-scale", "0.2", "--clients", "pinned", "--fault", "pause"]
    assert main([*argv, "--observe", "5", "--candidates", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = summary["report"]
    assert report["overlaps"] == [] and report["transitions"] == 1
    (failover,) = report["failovers"]
    assert failover["old_leader"] == summary["leader_before"]
    assert failover["new_leader"] == summary["leader_after"] != summary["leader_before"]
    timings = summary["timings"]
    # A full lease from the successor's sight of the last renewal (etcd applied it
    # a moment before the old leader heard back).
    assert failover["since_last_renewal"] >= timings["lease_duration"] - 0.5


def test_native_election_under_a_blackhole(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["election", "--kind", "etcd", "--ttl", "2", "--time-scale", "0.2"]
    assert main([*argv, "--fault", "blackhole", "--observe", "6", "--candidates", "3"]) == 0
    out = capsys.readouterr().out
    assert "etcd election: ttl 2" in out and "overlaps 0" in out
    # The successor is the next campaign in etcd's queue: the order the candidates'
    # keys were created, which their concurrent starts race for.
    before = re.search(r"leader before the fault: (c\d)", out)
    failover = re.search(r"failover: (c\d) -> (c\d)", out)
    assert before and failover, out
    assert failover[1] == before[1] != failover[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loss", "1.5"], "must be between 0 and 1"),
        (["--fault", "flood"], "invalid choice"),
        (["--time-scale", "0"], "must be a positive finite number"),
        (["--candidates", "0"], "must be at least 1"),
        (["--kind", "zookeeper"], "invalid choice"),
        (["--ttl", "0.5"], "not an integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["election", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

"""The ``etcdlab`` command's own options and its one-line usage errors."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from etcdlab.cli.main import main
from etcdlab.cluster.local import MAX_MEMBERS, LocalCluster


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"etcdlab {version('etcdlab')}\n"


@pytest.mark.parametrize("members", ["0", str(MAX_MEMBERS + 1), "100", "three"])
def test_member_count_is_bounded_before_anything_starts(
    members: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "up", "--members", members])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("etcdlab cluster up: error: argument --members: "), error
    if members.isdigit() and int(members) > MAX_MEMBERS:
        assert f"must be at most {MAX_MEMBERS} (etcd clusters have 3, 5 or 7 members)" in error


def test_a_cluster_too_big_is_refused_before_any_port_is_taken() -> None:
    with pytest.raises(ValueError, match=f"between 1 and {MAX_MEMBERS}"):
        LocalCluster(MAX_MEMBERS + 1)

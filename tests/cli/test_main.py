"""The ``etcdlab`` command's own options and its one-line usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from etcdlab.cli.main import main
from etcdlab.cli.run import exit_status
from etcdlab.cluster.local import MAX_MEMBERS, LocalCluster
from etcdlab.common import exits


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


def test_a_failed_run_exits_1_with_a_report_that_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "quiet.toml"
    scenario.write_text("duration = 10\n")
    out = tmp_path / "report"
    # Nothing listens on port 1: the control plane cannot seed its objects.
    assert main(["run", str(scenario), "--endpoints", "127.0.0.1:1", "--out", str(out)]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("etcdlab run: error: ") and "127.0.0.1:1" in error
    outcome = json.loads((out / "report.json").read_text())["outcome"]
    assert outcome["state"] == "failed" and "127.0.0.1:1" in outcome["reason"]


def test_a_completed_run_with_differing_claims_exits_4_with_fail_on_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 s of fault: the claims about 10-60 s into a fault cannot agree.
    scenario = tmp_path / "short.toml"
    scenario.write_text('duration = 10\n[[fault]]\nat = 1\nduration = 2\nkind = "loss"\n')
    out = tmp_path / "report"
    small = ["--components", "1", "--workloads", "2", "--nodes", "2"]
    argv = ["run", str(scenario), "--time-scale", "0.1", "--out", str(out), "--quiet", *small]
    assert main([*argv, "--fail-on", "differs"]) == exits.DIFFERS
    report = json.loads((out / "report.json").read_text())
    assert report["outcome"]["state"] == "completed"
    assert report["verdicts"]["differs"] > 0 and report["safety"]["overlapping_leaders"] == 0
    assert capsys.readouterr().out.startswith("scenario short ")


def test_an_out_that_cannot_be_a_directory_is_one_line_before_anything_starts(
    tmp_path: Path,
) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "etcdlab", "run", "member-pause", "--out", str(taken / "report")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == exits.USAGE
    # One line: no "coroutine was never awaited" after it.
    assert result.stderr == (
        f"etcdlab run: error: --out {taken / 'report'}: cannot be the report's directory: "
        "Not a directory\n"
    )


@pytest.mark.parametrize(
    ("endpoints", "problem"),
    [("foo", 'not HOST:PORT: "foo"'), ("127.0.0.1:1,h:99999", 'not HOST:PORT: "h:99999"'),
     (" , ", "no HOST:PORT in ' , '")],
)  # fmt: skip
def test_endpoints_are_checked_before_anything_dials_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoints: str, problem: str
) -> None:
    scenario = tmp_path / "quiet.toml"
    scenario.write_text("duration = 10\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(scenario), "--endpoints", endpoints, "--out", str(tmp_path / "r")])
    assert exit_info.value.code == exits.USAGE
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == f"etcdlab run: error: argument --endpoints: {problem}"
    assert not (tmp_path / "r").exists()


def report(overlaps: int, differs: int) -> dict[str, Any]:
    return {"safety": {"overlapping_leaders": overlaps}, "verdicts": {"differs": differs}}


def test_exit_status_of_a_completed_run() -> None:
    assert exit_status(report(0, 0), None) == exits.COMPLETED == 0
    assert exit_status(report(0, 3), None) == exits.COMPLETED
    assert exit_status(report(0, 3), "differs") == exits.DIFFERS == 4
    assert exit_status(report(0, 0), "differs") == exits.COMPLETED
    # Safety first: it is what a CI job must never miss.
    assert exit_status(report(1, 3), "differs") == exits.UNSAFE == 3
    assert exit_status(report(1, 0), None) == exits.UNSAFE
    assert len({exits.COMPLETED, exits.FAILED, exits.USAGE, exits.UNSAFE, exits.DIFFERS}) == 5


def test_exit_statuses_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert exits.RUN in help_text and "--fail-on {differs}" in help_text
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("| exit status | meaning |", 1)[1].split("\n\n", 1)[0]
    codes = [row.split("|")[1].strip() for row in table.strip().splitlines()[1:]]
    assert codes == ["0", "1", "2", "3", "4", "130, 143"]


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_grpc_logs_go_to_a_file_beside_the_report_unless_verbose(
    tmp_path: Path, verbose: bool
) -> None:
    scenario = tmp_path / "quiet.toml"
    scenario.write_text("duration = 10\n")
    out = tmp_path / "report"
    # gRPC's C core traces every API call to descriptor 2 with these, read at import.
    env = {**os.environ, "GRPC_VERBOSITY": "debug", "GRPC_TRACE": "api"}
    argv = ["run", str(scenario), "--endpoints", "127.0.0.1:1", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "etcdlab", *argv, *(["--verbose"] if verbose else [])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == exits.FAILED
    python_lines = [line for line in result.stderr.splitlines() if line.startswith("etcdlab")]
    assert len(python_lines) == 1 and python_lines[0].startswith("etcdlab run: error: ")
    native = "grpc_init(void)"
    if verbose:
        assert native in result.stderr
        assert not (out / "grpc.log").exists()
    else:
        assert result.stderr == python_lines[0] + "\n"
        assert native in (out / "grpc.log").read_text()

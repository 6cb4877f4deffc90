"""The Go reference as the run's components: its records, its processes' arguments,
and one-line errors when it cannot run (no Go needed for these)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from etcdlab.common.timeline import ErrorClass, Event, EventKind, Health, LeaderChange, Request
from etcdlab.common.timescale import TimeScale
from etcdlab.controlplane.plane import PlaneConfig
from etcdlab.scenario import engine, goclients


def test_each_record_kind_of_the_oracle_parses() -> None:
    parse = goclients.parse_record
    request = parse('{"type":"Request","t":17.1,"component":"apiserver-0","op":"create",'
                    '"latency":7.0,"error":"cluster","source":"etcd",'
                    '"member":"127.0.0.1:9"}')  # fmt: skip
    assert request == Request(17.1, "apiserver-0", "create", 7.0, ErrorClass.CLUSTER, "etcd",
                              "127.0.0.1:9")  # fmt: skip
    ok = parse('{"type":"Request","t":1,"component":"c-0","op":"txn","latency":0.002,'
               '"error":null,"source":"etcd","member":null}')  # fmt: skip
    assert isinstance(ok, Request) and ok.ok and ok.member is None
    assert parse('{"type":"Health","t":2,"component":"apiserver-0/etcd-readiness",'
                 '"healthy":false}') == Health(2, "apiserver-0/etcd-readiness", False)  # fmt: skip
    state = '{"type":"Event","t":3,"component":"a","kind":"transport_state","detail":"e READY p"}'
    assert parse(state) == Event(3, "a", EventKind.TRANSPORT_STATE, "e READY p")
    assert parse('{"type":"LeaderChange","t":4,"lease":"l","candidate":"l-0","leading":true}') == (
        LeaderChange(4, "l", "l-0", True)
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"type":"Gauge","t":1}', "unknown record type 'Gauge'"),
        ('{"type":"Health","t":1,"component":"a"}', "Health record without 'healthy'"),
        ('{"type":"Event","t":1,"component":"a","kind":"bogus"}', "bogus"),
        ("not json", "Expecting value"),
    ],
)
def test_a_bad_line_is_an_error_naming_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        goclients.parse_record(line)


def test_the_processes_get_the_planes_leases_candidates_and_timings() -> None:
    config = replace(PlaneConfig(), apiservers=2, components=1, candidates=3, request_timeout=30.0)
    argv = goclients.commands(Path("/bin/oracle"), ["a:1", "b:2", "c:3"], config, 1000.5)
    assert list(argv) == ["apiserver-0", "apiserver-1", "elect"]
    assert "--endpoints=b:2,c:3,a:1" in argv["apiserver-1"]  # rotated like the plane's
    assert {"--name=apiserver-1", "--request-timeout=30", "--healthcheck-timeout=2",
            "--start-unix=1000.500000"} <= set(argv["apiserver-1"])  # fmt: skip
    # The plane's write traffic, spread over the apiservers: 10.6 writes per 15 s churn.
    assert "--write-rate=0.353333" in argv["apiserver-1"]
    no_churn = goclients.commands(Path("/o"), ["a:1"], replace(config, churn_period=0.0), 0.0)
    assert "--write-rate=0" in no_churn["apiserver-0"]
    elect = argv["elect"]
    assert elect[:2] == ["/bin/oracle", "elect"]
    assert "--lease=kube-controller-manager,kube-scheduler,component-0" in elect
    assert {"--candidates=3", "--lease-duration=15", "--renew-deadline=10",
            "--retry-period=2", "--shared-clients=2"} <= set(elect)  # fmt: skip


def test_a_missing_oracle_named_in_the_environment_is_one_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(goclients.ORACLE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(goclients.OracleMissing, match="make oracle"):
        goclients.oracle_binary()


def test_go_clients_need_real_timings() -> None:
    with pytest.raises(ValueError, match="time_scale must be 1"):
        engine.RunOptions(clients="go", time_scale=TimeScale(0.5))
    with pytest.raises(ValueError, match="clients must be one of python, go"):
        engine.RunOptions(clients="java")


def test_the_cli_says_in_one_line_to_build_the_oracle(tmp_path: Path) -> None:
    env = {"ETCDLAB_ORACLE": str(tmp_path / "missing"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "etcdlab", "run", "partition-minority", "--clients", "go",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    # Nothing started: the options ask for what this machine lacks, as --network kernel
    # without root (exit 2), not a run that failed (1).
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "make oracle" in line and line.startswith("etcdlab run: error: --clients go: ")
    assert not (tmp_path / "out").exists()  # nothing started

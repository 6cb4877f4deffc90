"""compose.yaml: valid for docker-compose, and every command, port and URL in it
lines up with the proxy config and the etcdlab CLI (no Docker daemon needed)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from etcdlab.cli.main import build_parser
from etcdlab.proxy.cli import spec_from_toml
from etcdlab.scenario.engine import server_flags
from etcdlab.scenario.fidelity import PEER_WRITE_DEADLINE
from etcdlab.scenario.spec import BUILTINS
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ("etcd-0", "etcd-1", "etcd-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    tool = require_tool("docker-compose", "Debian: apt-get install docker-compose")
    result = subprocess.run(
        [tool, "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


@pytest.fixture(scope="module")
def proxy_config() -> dict[str, Any]:
    return tomllib.loads((ROOT / "compose" / "proxy.toml").read_text())


def flags(command: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in command if arg.startswith("--"))


def links(proxy_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {link["name"]: link for link in proxy_config["links"]}


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*MEMBERS, "proxy", "demo"}
    for member in MEMBERS:
        image = compose["services"][member]["image"]
        assert image.startswith(("quay.io/coreos/etcd:v3.5.", "gcr.io/etcd-development/etcd:v3.5."))


def test_proxy_links_front_every_member(proxy_config: dict[str, Any]) -> None:
    by_name = links(proxy_config)
    for member in MEMBERS:
        client, peer = by_name[f"{member}-client"], by_name[f"{member}-peer"]
        assert client["upstream"] == f"{member}:2379"
        assert client.get("http2", True) is True
        assert peer["upstream"] == f"{member}:2380"
        assert peer["http2"] is False, "raft speaks HTTP/1.1: the peer link must be raw TCP"
        # etcd's own deadline on raft's stream writes, in the file's milliseconds.
        assert peer["write_deadline"] == PEER_WRITE_DEADLINE * 1000
        assert "write_deadline" not in client


def test_members_advertise_their_peer_links(
    compose: dict[str, Any], proxy_config: dict[str, Any]
) -> None:
    by_name = links(proxy_config)
    expected_cluster = ",".join(
        f"{m}=http://proxy:{port(by_name[f'{m}-peer']['listen'])}" for m in MEMBERS
    )
    for member in MEMBERS:
        command = compose["services"][member]["command"]
        assert command[0] == "etcd"
        given = flags(command)
        assert given["name"] == member
        assert given["initial-cluster"] == expected_cluster
        advertised = urlsplit(given["initial-advertise-peer-urls"])
        assert (advertised.hostname, advertised.port) == (
            "proxy",
            port(by_name[f"{member}-peer"]["listen"]),
        )
        assert port(given["listen-client-urls"]) == port(by_name[f"{member}-client"]["upstream"])
        assert port(given["listen-peer-urls"]) == port(by_name[f"{member}-peer"]["upstream"])
        # The watch cache stays fresh only with progress notifications.
        assert "experimental-watch-progress-notify-interval" in given


def test_proxy_service_runs_the_cli_with_the_mounted_config(
    compose: dict[str, Any], proxy_config: dict[str, Any]
) -> None:
    proxy = compose["services"]["proxy"]
    args = build_parser().parse_args(proxy["command"])
    assert args.command == "proxy"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    assert str(args.config) in mounts
    assert Path(mounts[str(args.config)]).resolve() == ROOT / "compose" / "proxy.toml"
    # The proxy's own config reader accepts the file as compose mounts it.
    spec = spec_from_toml((ROOT / "compose" / "proxy.toml").read_text(), args)
    assert {link.name for link in spec.links} == {f"{m}-{k}" for m in MEMBERS
                                                 for k in ("client", "peer")}  # fmt: skip
    assert spec.control is not None and spec.time_scale == proxy_config["time_scale"]
    # docker-compose config writes ports in the long form.
    assert port(proxy_config["control"]) in {p["target"] for p in proxy["ports"]}


def test_demo_runs_a_scenario_through_the_proxies(
    compose: dict[str, Any], proxy_config: dict[str, Any]
) -> None:
    demo = compose["services"]["demo"]
    args = build_parser().parse_args(demo["command"])
    assert args.command == "run" and args.scenario in BUILTINS
    by_name = links(proxy_config)
    assert list(args.endpoints) == [
        f"proxy:{port(by_name[f'{m}-client']['listen'])}" for m in MEMBERS
    ]
    control = urlsplit(args.proxy_control)
    assert (control.hostname, control.port) == ("proxy", port(proxy_config["control"]))
    assert set(demo["depends_on"]) >= {"proxy", *MEMBERS}
    assert any(v.endswith(":/reports:rw") for v in demo["volumes"])
    assert str(args.out).startswith("/reports")
    assert proxy_config["time_scale"] == args.time_scale, "network delays scale with timeouts"
    # The scenario's faults must all be possible through the control API alone.
    assert {s.kind for s in BUILTINS[args.scenario].faults} <= {"loss", "partition-minority",
                                                                "partition-majority"}  # fmt: skip


def test_members_run_etcds_flags_for_the_demos_time_scale(compose: dict[str, Any]) -> None:
    # A scaled demo against members at real raft timings would not be scaled at all.
    demo = build_parser().parse_args(compose["services"]["demo"]["command"])
    wanted = flags(server_flags(demo.time_scale).args())
    for member in MEMBERS:
        given = flags(compose["services"][member]["command"])
        assert {k: given.get(k) for k in wanted} == wanted, member


def test_dockerfile_builds_the_cli_image(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["etcdlab"]' in dockerfile
    for package in ("emulator", "proxy", "protos", "bench"):
        assert f"COPY {package} {package}" in dockerfile
    for service in ("proxy", "demo"):
        assert compose["services"][service]["image"] == "etcdlab:latest"
        assert Path(compose["services"][service]["build"]["context"]).resolve() == ROOT

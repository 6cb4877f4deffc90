"""The control API (Toxiproxy-shaped HTTP/JSON), metrics, and the CLI process."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.control import ControlServer
from proxy.faults import Latency, Loss
from proxy.server import ProxyServer


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    if response_is_text(raw):
        return status, raw.decode()
    return status, json.loads(raw) if raw else None


def response_is_text(raw: bytes) -> bool:
    return raw.startswith(b"#")


@pytest.fixture
async def control() -> AsyncIterator[tuple[ProxyServer, str]]:
    async with ProxyServer(seed=3, time_scale=0.5) as server:
        api = ControlServer(server)
        await api.start()
        host, port = api.address
        try:
            yield server, f"http://{host}:{port}"
        finally:
            await api.close()


async def test_proxies_and_toxics_round_trip(control: tuple[ProxyServer, str]) -> None:
    server, base = control

    async def http(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await asyncio.to_thread(call, base, method, path, body)

    status, created = await http("POST", "/proxies", {"name": "m0", "upstream": "127.0.0.1:1"})
    assert status == 201 and created["name"] == "m0" and created["toxics"] == []
    host, port = server.links["m0"].address
    assert created["listen"] == f"{host}:{port}"

    status, toxic = await http(
        "POST",
        "/proxies/m0/toxics",
        {"name": "slow", "type": "latency", "stream": "upstream", "attributes": {"latency": 50}},
    )
    assert status == 200
    assert toxic == {
        "name": "slow",
        "type": "latency",
        "stream": "upstream",
        "toxicity": 1.0,
        "attributes": {"latency": 50.0, "jitter": 0.0},
    }
    fault = server.links["m0"].faults[0]
    assert isinstance(fault, Latency) and fault.latency == 0.05

    status, updated = await http("POST", "/proxies/m0/toxics/slow", {"attributes": {"jitter": 10}})
    assert status == 200 and updated["attributes"] == {"latency": 50.0, "jitter": 10.0}

    status, loss = await http(
        "POST",
        "/proxies/m0/toxics",
        {"type": "loss", "stream": "both", "attributes": {"probability": 0.3}},
    )
    assert status == 200 and loss["name"] == "loss_both"
    assert isinstance(server.links["m0"].faults[1], Loss)

    status, listed = await http("GET", "/proxies")
    assert [t["name"] for t in listed["m0"]["toxics"]] == ["slow", "loss_both"]

    assert (await http("DELETE", "/proxies/m0/toxics/slow"))[0] == 204
    assert (await http("POST", "/reset"))[0] == 204
    assert server.links["m0"].faults == ()
    assert (await http("DELETE", "/proxies/m0"))[0] == 204
    assert server.links == {}


async def test_bad_requests_get_errors_not_crashes(control: tuple[ProxyServer, str]) -> None:
    _, base = control

    async def http(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await asyncio.to_thread(call, base, method, path, body)

    await http("POST", "/proxies", {"name": "m0", "upstream": "127.0.0.1:1"})
    status, error = await http("POST", "/proxies/m0/toxics", {"type": "loss", "attributes": {}})
    assert status == 400 and "probability" in error["error"]
    status, error = await http("POST", "/proxies/m0/toxics", {"type": "nope"})
    assert status == 400 and "unknown toxic type" in error["error"]
    status, error = await http(
        "POST", "/proxies/m0/toxics", {"type": "loss", "attributes": {"probability": 2}}
    )
    assert status == 400 and "probability" in error["error"]
    assert (await http("GET", "/proxies/nope"))[0] == 404
    assert (await http("GET", "/nowhere"))[0] == 404
    status, _ = await http("POST", "/proxies", {"name": "m0", "upstream": "127.0.0.1:1"})
    assert status == 400


async def test_metrics_are_prometheus_text(control: tuple[ProxyServer, str]) -> None:
    server, base = control
    await server.add_link("m1", ("127.0.0.1", 1))
    server.links["m1"].add(Loss(0.1))
    status, text = await asyncio.to_thread(call, base, "GET", "/metrics")
    assert status == 200
    assert 'etcdlab_proxy_bytes_total{direction="upstream",link="m1"} 0.0' in text
    assert 'etcdlab_proxy_added_delay_seconds_count{link="m1"} 0.0' in text
    assert 'etcdlab_proxy_loop_lag_seconds{which="max"}' in text


@pytest.fixture
def cli_process(tmp_path: Path) -> Iterator[dict[str, Any]]:
    config = tmp_path / "links.toml"
    config.write_text(
        'seed = 5\ncontrol = "127.0.0.1:0"\n'
        '[[links]]\nname = "a"\nupstream = "127.0.0.1:1"\n'
        '[[links.faults]]\ntype = "loss"\nprobability = 0.2\n'
        '[[links]]\nname = "b"\nupstream = "127.0.0.1:2"\nhttp2 = false\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "proxy", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield json.loads(line)
    finally:
        process.terminate()
        try:
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()


def test_cli_prints_one_json_line_and_serves_control(cli_process: dict[str, Any]) -> None:
    assert set(cli_process["links"]) == {"a", "b"}
    assert cli_process["listen"] == cli_process["links"]["a"]
    status, proxies = call(f"http://{cli_process['control']}", "GET", "/proxies")
    assert status == 200
    assert proxies["a"]["toxics"][0]["type"] == "loss"
    assert proxies["a"]["toxics"][0]["stream"] == "both"
    assert proxies["b"]["http2"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "127.0.0.1:0"], "--upstream are required"),
        (["--listen", "nope", "--upstream", "127.0.0.1:1"], "not HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--loss", "1.5"], "[0, 1)"),
        (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--latency", "x"], "duration"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "proxy", *args],
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_port_in_use_is_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        listen = f"127.0.0.1:{port}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "emulator",
                "proxy",
                "--listen",
                listen,
                "--upstream",
                "127.0.0.1:1",
            ],
            capture_output=True,
            timeout=30,
            text=True,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"etcdlab proxy: error: link proxy cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    ]

"""Runtime control over HTTP/JSON, shaped like Toxiproxy's API.

Routes: ``GET /version``, ``GET|POST /proxies``, ``POST /populate``,
``GET|POST|DELETE /proxies/{name}``, ``GET|POST /proxies/{name}/toxics``,
``GET|POST|DELETE /proxies/{name}/toxics/{toxic}``, ``POST /reset`` (enable
every proxy, remove every toxic) and ``GET /metrics`` (Prometheus text). A
tiny HTTP/1.1 server on asyncio streams: one request per connection, no
keep-alive, bodies up to 64 KiB.
See docs/PROXY.md for what matches Toxiproxy and what does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any

from etcdlab.common.timescale import UNSCALED, TimeScale
from etcdlab.proxy.faults.registry import from_toxic, to_toxic
from etcdlab.proxy.link import Address, ProxyLink
from etcdlab.proxy.metrics import render
from etcdlab.proxy.server import ProxyServer

log = logging.getLogger("etcdlab.proxy.control")

_MAX_BODY = 64 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


def format_address(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def proxy_json(link: ProxyLink) -> dict[str, Any]:
    return {
        "name": link.name,
        "listen": format_address(link.address),
        "upstream": format_address(link.upstream),
        "enabled": link.enabled,
        "http2": link.http2,
        "toxics": [to_toxic(f) for f in link.faults],
    }


class ControlServer:
    """Serves the control API for ``server`` on ``listen`` (loopback by default).

    Toxics arrive in real time (as Toxiproxy's: milliseconds); ``scale`` puts
    them on the run's clock as they enter a link, and the API shows them as
    they were written.
    """

    def __init__(
        self,
        server: ProxyServer,
        listen: Address = ("127.0.0.1", 0),
        *,
        scale: TimeScale = UNSCALED,
    ) -> None:
        self.proxy = server
        self.listen = listen
        self.scale = scale
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def address(self) -> Address:
        if self._server is None:
            raise RuntimeError("control server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, content_type, body = 500, "application/json", b""
        try:
            method, path, payload = await asyncio.wait_for(_read_request(reader), 10)
            status, result = await self.dispatch(method, path, payload)
            if isinstance(result, bytes):
                content_type, body = "text/plain; version=0.0.4; charset=utf-8", result
            elif status != 204:
                body = json.dumps(result).encode()
        except HttpError as error:
            status, body = error.status, json.dumps({"error": str(error)}).encode()
        except (ValueError, KeyError, TypeError) as error:
            status, body = 400, json.dumps({"error": str(error).strip("'\"")}).encode()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            return
        except OSError as error:
            # A listen address in use (create, enable, reset): Toxiproxy answers 500.
            status, body = 500, json.dumps({"error": str(error)}).encode()
        reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()

    async def dispatch(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Route one request; returns (status, JSON-able result or raw bytes)."""
        parts = [p for p in path.split("?")[0].split("/") if p]
        links = self.proxy.links
        if parts == ["version"] and method == "GET":
            return 200, {"version": "etcdlab-proxy"}
        if parts == ["metrics"] and method == "GET":
            return 200, render(self.proxy)
        if parts == ["reset"] and method == "POST":
            for each in links.values():
                each.clear()
                await each.start()
            return 204, {}
        if parts == ["populate"] and method == "POST":
            return await self.populate(body)
        if parts == ["proxies"]:
            if method == "GET":
                return 200, {name: proxy_json(each) for name, each in links.items()}
            if method == "POST":
                wanted = _ProxySpec.parse(_object(body))
                if wanted.name in links:
                    raise HttpError(409, f"proxy already exists: {wanted.name}")
                return 201, proxy_json(await wanted.create(self.proxy))
        if len(parts) >= 2 and parts[0] == "proxies":
            link = links.get(parts[1])
            if link is None:
                raise HttpError(404, f"proxy not found: {parts[1]}")
            if len(parts) == 2:
                if method == "GET":
                    return 200, proxy_json(link)
                if method == "DELETE":
                    await self.proxy.remove_link(link.name)
                    return 204, {}
                if method in ("POST", "PATCH"):
                    await _update(link, _object(body))
                    return 200, proxy_json(link)
            if len(parts) == 3 and parts[2] == "toxics":
                if method == "GET":
                    return 200, [to_toxic(f) for f in link.faults]
                if method == "POST":
                    fault = from_toxic(_object(body))
                    if fault.name in {f.name for f in link.faults}:
                        raise HttpError(409, f"toxic already exists: {fault.name}")
                    return 200, to_toxic(link.add(fault.scaled(self.scale)))
            if len(parts) == 4 and parts[2] == "toxics":
                current = {f.name: f for f in link.faults}.get(parts[3])
                if current is None:
                    raise HttpError(404, f"toxic not found: {parts[3]}")
                if method == "GET":
                    return 200, to_toxic(current)
                if method == "DELETE":
                    link.remove(current)
                    return 204, {}
                if method in ("POST", "PATCH"):
                    merged = to_toxic(current)
                    update = _object(body)
                    merged["attributes"].update(update.get("attributes") or {})
                    merged["stream"] = update.get("stream", merged["stream"])
                    merged["toxicity"] = update.get("toxicity", merged["toxicity"])
                    fault = from_toxic(merged).scaled(self.scale)
                    return 200, to_toxic(link.replace(fault))
        raise HttpError(404, f"no route for {method} {path}")

    async def populate(self, body: Any) -> tuple[int, Any]:
        """Create or replace many proxies (Toxiproxy's ``POST /populate``).

        Every entry is checked before anything changes. A proxy that exists with
        the same listen and upstream addresses is kept as it is (toxics too);
        one that differs is closed and created anew. The answer lists the
        proxies; on a failure midway it carries the error, its status and the
        proxies done so far, as Toxiproxy's does.
        """
        if not isinstance(body, list):
            raise ValueError("request body must be a JSON list of proxies")
        wanted = [
            _ProxySpec.parse(_object(entry), f" at proxy {i + 1}") for i, entry in enumerate(body)
        ]
        names = [spec.name for spec in wanted]
        if len(set(names)) != len(names):
            raise ValueError("duplicate proxy names in the list")
        done: list[dict[str, Any]] = []
        for spec in wanted:
            try:
                existing = self.proxy.links.get(spec.name)
                if existing is not None and spec.same_as(existing):
                    link = existing
                else:
                    if existing is not None:
                        await self.proxy.remove_link(spec.name)
                    link = await spec.create(self.proxy)
            except OSError as error:
                return 500, {"error": str(error), "status": 500, "proxies": done}
            done.append(proxy_json(link))
        return 201, {"proxies": done}


@dataclasses.dataclass(frozen=True)
class _ProxySpec:
    """A proxy as the API describes it: ``name``, ``upstream``, ``listen``, ``enabled``."""

    name: str
    upstream: Address
    listen: Address
    enabled: bool
    http2: bool

    @classmethod
    def parse(cls, body: dict[str, Any], where: str = "") -> _ProxySpec:
        for required in ("name", "upstream"):
            if not body.get(required):
                raise ValueError(f"missing required field: {required}{where}")
        return cls(
            str(body["name"]),
            parse_address(str(body["upstream"])),
            parse_address(str(body.get("listen") or "127.0.0.1:0")),
            _flag("enabled", body.get("enabled", True)),
            _flag("http2", body.get("http2", True)),
        )

    async def create(self, server: ProxyServer) -> ProxyLink:
        link = await server.add_link(self.name, self.upstream, self.listen, http2=self.http2)
        if not self.enabled:
            await link.disable()
        return link

    def same_as(self, link: ProxyLink) -> bool:
        return (
            self.upstream == link.upstream
            and self.listen in (link.listen, link.address)
            and self.http2 == link.http2
        )


async def _update(link: ProxyLink, body: dict[str, Any]) -> None:
    """``POST /proxies/{name}``: change ``upstream`` (for new connections) and
    ``enabled``; a different ``listen`` is refused (delete and create instead)."""
    if "listen" in body and parse_address(str(body["listen"])) not in (link.listen, link.address):
        raise ValueError("listen cannot change; delete the proxy and create it again")
    enabled = _flag("enabled", body.get("enabled", link.enabled))
    if "upstream" in body:
        link.upstream = parse_address(str(body["upstream"]))
    if enabled:
        await link.start()
    else:
        await link.disable()


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    return body


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, Any]:
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) != 3:
        raise HttpError(400, "bad request line")
    method, path, _ = request_line
    length = 0
    while True:
        line = (await reader.readline()).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            if not value.strip().isdigit():
                raise HttpError(400, "bad Content-Length")
            length = int(value)
    if length > _MAX_BODY:
        raise HttpError(413, "request body too large")
    raw = await reader.readexactly(length) if length else b""
    try:
        body = json.loads(raw) if raw.strip() else None
    except json.JSONDecodeError as error:
        raise HttpError(400, f"invalid JSON: {error}") from None
    return method.upper(), path, body

"""Runtime control over HTTP/JSON, shaped like Toxiproxy's API, served by aiohttp.

Routes: ``GET /version``, ``GET|POST /proxies``, ``POST /populate``,
``GET|POST|PATCH|DELETE /proxies/{name}``, ``GET|POST /proxies/{name}/toxics``,
``GET|POST|PATCH|DELETE /proxies/{name}/toxics/{toxic}``, ``POST /reset``
(enable every proxy, remove every toxic), ``GET /metrics`` (Prometheus text)
and ``GET /openapi.json``, the description of them all (``proxy/openapi.json``).
Errors are ``{"error": ..., "status": ...}`` as Toxiproxy's: 400 naming the
field, 404, 405 with ``Allow``, 409, 413 past 64 KiB, 500 when an address
cannot be bound. See docs/PROXY.md for what matches Toxiproxy and what does not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from etcdlab.common.timescale import UNSCALED, TimeScale
from etcdlab.proxy.faults.base import spelled
from etcdlab.proxy.faults.registry import from_toxic, to_toxic
from etcdlab.proxy.link import Address, ProxyLink, write_deadline_ms
from etcdlab.proxy.metrics import render
from etcdlab.proxy.server import ProxyServer

log = logging.getLogger("etcdlab.proxy.control")

_MAX_BODY = 64 * 1024
_METRICS_TYPE = "text/plain; version=0.0.4"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not HOST:PORT: {spelled(text)}")
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
        "write_deadline": _milliseconds(link.write_deadline),
        "toxics": [to_toxic(f) for f in link.faults],
    }


def _milliseconds(seconds: float | None) -> float | None:
    # Rounded to picoseconds, as toxics' durations, so what was written reads back.
    return None if seconds is None else round(seconds * 1000, 9)


def openapi() -> dict[str, Any]:
    """The API's OpenAPI description, as kept in the repository."""
    text = resources.files("etcdlab.proxy").joinpath("openapi.json").read_text()
    described: dict[str, Any] = json.loads(text)
    return described


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as Toxiproxy's JSON: ``{"error", "status"}``."""
    try:
        return await handler(request)
    except HttpError as error:
        return _error(error.status, str(error))
    except web.HTTPException as error:
        # The router's 404 and 405 (with its Allow header), the body limit's 413.
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return _error(error.status, error.reason, headers)
    except ValueError as error:
        return _error(400, str(error))
    except KeyError as error:
        # (str() of a KeyError is the repr of its message.)
        return _error(400, str(error.args[0]) if error.args else "bad request")
    except OSError as error:
        # A listen address in use (create, enable, reset): Toxiproxy answers 500.
        return _error(500, str(error))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


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
        self._runner: web.AppRunner | None = None
        self._address: Address | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=_MAX_BODY)
        app.add_routes(
            [
                web.get("/version", self.version),
                web.get("/metrics", self.metrics),
                web.get("/openapi.json", self.description),
                web.post("/reset", self.reset),
                web.post("/populate", self.populate),
                web.get("/proxies", self.list_proxies),
                web.post("/proxies", self.create_proxy),
                web.get("/proxies/{proxy}", self.get_proxy),
                web.post("/proxies/{proxy}", self.update_proxy),
                web.patch("/proxies/{proxy}", self.update_proxy),
                web.delete("/proxies/{proxy}", self.delete_proxy),
                web.get("/proxies/{proxy}/toxics", self.list_toxics),
                web.post("/proxies/{proxy}/toxics", self.create_toxic),
                web.get("/proxies/{proxy}/toxics/{toxic}", self.get_toxic),
                web.post("/proxies/{proxy}/toxics/{toxic}", self.update_toxic),
                web.patch("/proxies/{proxy}/toxics/{toxic}", self.update_toxic),
                web.delete("/proxies/{proxy}/toxics/{toxic}", self.delete_toxic),
            ]
        )
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.listen[0], self.listen[1])
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._address = str(host), int(port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def address(self) -> Address:
        if self._address is None or self._runner is None:
            raise RuntimeError("control server is not started")
        return self._address

    # -- routes --------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "etcdlab-proxy"})

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=render(self.proxy))
        response.headers["Content-Type"] = f"{_METRICS_TYPE}; charset=utf-8"
        return response

    async def description(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    async def reset(self, request: web.Request) -> web.Response:
        for each in self.proxy.links.values():
            each.clear()
            await each.start()
        return web.Response(status=204)

    async def list_proxies(self, request: web.Request) -> web.Response:
        links = self.proxy.links
        return web.json_response({name: proxy_json(each) for name, each in links.items()})

    async def create_proxy(self, request: web.Request) -> web.Response:
        wanted = _ProxySpec.parse(await _object(request))
        if wanted.name in self.proxy.links:
            raise HttpError(409, f"proxy already exists: {wanted.name}")
        return web.json_response(proxy_json(await wanted.create(self.proxy)), status=201)

    async def get_proxy(self, request: web.Request) -> web.Response:
        return web.json_response(proxy_json(self._link(request)))

    async def update_proxy(self, request: web.Request) -> web.Response:
        """Change ``upstream`` (for new connections), ``write_deadline`` (for
        writes blocked from then on) and ``enabled``; a different ``listen`` is
        refused (delete and create instead)."""
        link = self._link(request)
        body = await _object(request)
        if "listen" in body and _address("listen", body["listen"]) not in (
            link.listen,
            link.address,
        ):
            raise ValueError("listen cannot change; delete the proxy and create it again")
        enabled = _flag("enabled", body.get("enabled", link.enabled))
        upstream = _address("upstream", body["upstream"]) if "upstream" in body else link.upstream
        if "write_deadline" in body:
            link.write_deadline = _deadline(body["write_deadline"])
        link.upstream = upstream
        if enabled:
            await link.start()
        else:
            await link.disable()
        return web.json_response(proxy_json(link))

    async def delete_proxy(self, request: web.Request) -> web.Response:
        await self.proxy.remove_link(self._link(request).name)
        return web.Response(status=204)

    async def list_toxics(self, request: web.Request) -> web.Response:
        return web.json_response([to_toxic(f) for f in self._link(request).faults])

    async def create_toxic(self, request: web.Request) -> web.Response:
        link = self._link(request)
        fault = from_toxic(await _object(request))
        if fault.name in {f.name for f in link.faults}:
            raise HttpError(409, f"toxic already exists: {fault.name}")
        return web.json_response(to_toxic(link.add(fault.scaled(self.scale))))

    async def get_toxic(self, request: web.Request) -> web.Response:
        return web.json_response(to_toxic(self._toxic(request)[1]))

    async def update_toxic(self, request: web.Request) -> web.Response:
        """Merge new attributes, ``stream`` or ``toxicity`` into the toxic."""
        link, current = self._toxic(request)
        update = await _object(request)
        merged = to_toxic(current)
        if update.get("type", merged["type"]) != merged["type"]:
            # Toxiproxy keeps the type silently; a user who asked for another would
            # believe it changed.
            raise ValueError("type cannot change; delete the toxic and create it again")
        attributes = update.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise ValueError(f"attributes must be an object, not {spelled(attributes)}")
        merged["attributes"].update(attributes)
        for key in ("stream", "toxicity"):
            merged[key] = update.get(key, merged[key])
        fault = from_toxic(merged).scaled(self.scale)
        return web.json_response(to_toxic(link.replace(fault)))

    async def delete_toxic(self, request: web.Request) -> web.Response:
        link, current = self._toxic(request)
        link.remove(current)
        return web.Response(status=204)

    async def populate(self, request: web.Request) -> web.Response:
        """Create or replace many proxies (Toxiproxy's ``POST /populate``).

        Every entry is checked before anything changes. A proxy that exists with
        the same listen and upstream addresses is kept as it is (toxics too);
        one that differs is closed and created anew. The answer lists the
        proxies; on a failure midway it carries the error, its status and the
        proxies done so far, as Toxiproxy's does.
        """
        body = await _json(request)
        if not isinstance(body, list):
            raise ValueError("request body must be a JSON list of proxies")
        wanted = [
            _ProxySpec.parse(_must_be_object(entry, f"proxy {i + 1}"), f" at proxy {i + 1}")
            for i, entry in enumerate(body)
        ]
        names = [spec.name for spec in wanted]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise ValueError(f"name: {spelled(twice)} names more than one proxy in the list")
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
            except (OSError, ValueError) as error:
                status = 400 if isinstance(error, ValueError) else 500
                failed = {"error": str(error), "status": status, "proxies": done}
                return web.json_response(failed, status=status)
            done.append(proxy_json(link))
        return web.json_response({"proxies": done}, status=201)

    def _link(self, request: web.Request) -> ProxyLink:
        name = request.match_info["proxy"]
        link = self.proxy.links.get(name)
        if link is None:
            raise HttpError(404, f"proxy not found: {name}")
        return link

    def _toxic(self, request: web.Request) -> tuple[ProxyLink, Any]:
        link = self._link(request)
        name = request.match_info["toxic"]
        current = {f.name: f for f in link.faults}.get(name)
        if current is None:
            raise HttpError(404, f"toxic not found: {name}")
        return link, current


@dataclasses.dataclass(frozen=True)
class _ProxySpec:
    """A proxy as the API describes it: ``name``, ``upstream``, ``listen``,
    ``enabled``, ``http2``, ``write_deadline`` (seconds here, milliseconds in JSON)."""

    name: str
    upstream: Address
    listen: Address
    enabled: bool
    http2: bool
    write_deadline: float | None

    @classmethod
    def parse(cls, body: dict[str, Any], where: str = "") -> _ProxySpec:
        for required in ("name", "upstream"):
            if not body.get(required):
                raise ValueError(f"missing required field: {required}{where}")
        name = body["name"]
        if not isinstance(name, str) or "/" in name:
            raise ValueError(f'name must be a string without "/"{where}, not {spelled(name)}')
        try:
            return cls(
                name,
                _address("upstream", body["upstream"]),
                _address("listen", body.get("listen", "127.0.0.1:0")),
                _flag("enabled", body.get("enabled", True)),
                _flag("http2", body.get("http2", True)),
                _deadline(body.get("write_deadline")),
            )
        except ValueError as error:
            raise ValueError(f"{error}{where}") from None

    async def create(self, server: ProxyServer) -> ProxyLink:
        link = await server.add_link(
            self.name,
            self.upstream,
            self.listen,
            http2=self.http2,
            write_deadline=self.write_deadline,
        )
        if not self.enabled:
            await link.disable()
        return link

    def same_as(self, link: ProxyLink) -> bool:
        return (
            self.upstream == link.upstream
            and self.listen in (link.listen, link.address)
            and self.http2 == link.http2
            and self.write_deadline == link.write_deadline
        )


def _address(name: str, value: Any) -> Address:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a HOST:PORT string, not {spelled(value)}")
    try:
        return parse_address(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _deadline(value: Any) -> float | None:
    try:
        return write_deadline_ms(value)
    except ValueError as error:
        raise ValueError(f"write_deadline {error}") from None


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {spelled(value)}")
    return value


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HttpError(400, f"invalid JSON: {error}") from None


async def _object(request: web.Request) -> dict[str, Any]:
    return _must_be_object(await _json(request))


def _must_be_object(body: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(body, dict):
        # An empty body reads as None, as a JSON null does: neither sent anything.
        got = "nothing" if body is None else spelled(body)
        raise ValueError(f"{what} must be a JSON object, not {got}")
    return body

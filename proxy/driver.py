"""Adding and removing faults on named links, wherever the links run.

Every caller that injects faults (the scenario engine, the pytest fixtures,
the retry benchmark, the election harness) goes through a :class:`FaultDriver`:
:class:`LinkFaults` for links in this process, :class:`ControlFaults` for a
proxy process, over its control API. Which one is the caller's choice.

Faults are handed over as written, in real seconds. In process, this is the
edge where they meet the run's clock: :class:`LinkFaults` scales them once.
A proxy process scales what its API receives with its own ``--time-scale``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from etcdlab.common.timescale import UNSCALED, TimeScale
from etcdlab.proxy.faults.base import Fault
from etcdlab.proxy.faults.registry import to_toxic
from etcdlab.proxy.link import ProxyLink

# Seconds one call to a proxy's control API may take.
_CALL_TIMEOUT = 10.0


class FaultDriver(abc.ABC):
    """Faults on links named by the caller."""

    @abc.abstractmethod
    async def add(self, link: str, fault: Fault) -> None:
        """Apply ``fault`` (real seconds) to ``link``; ValueError if it cannot be."""

    @abc.abstractmethod
    async def remove(self, link: str, name: str) -> None:
        """Remove the fault named ``name`` from ``link``; one already gone is ignored."""

    async def apply(self, placements: Iterable[tuple[str, Fault]]) -> Applied:
        """Apply each (link, fault) in order; if one fails, those applied are removed."""
        applied = Applied(self)
        try:
            for link, fault in placements:
                await self.add(link, fault)
                applied.placed.append((link, fault.name))
        except BaseException:
            await applied.remove()
            raise
        return applied


class Applied:
    """Faults applied together by :meth:`FaultDriver.apply`, removed together."""

    def __init__(self, driver: FaultDriver) -> None:
        self.driver = driver
        self.placed: list[tuple[str, str]] = []  # (link, fault name)

    async def remove(self) -> None:
        """Remove every fault still on (calling it again does nothing)."""
        placed, self.placed = self.placed, []
        for link, name in placed:
            await self.driver.remove(link, name)


class LinkFaults(FaultDriver):
    """Links in this process, by name; faults scaled by ``scale`` as they enter."""

    def __init__(self, links: Mapping[str, ProxyLink], scale: TimeScale = UNSCALED) -> None:
        self.links = links
        self.scale = scale

    def _link(self, name: str) -> ProxyLink:
        try:
            return self.links[name]
        except KeyError:
            known = ", ".join(sorted(self.links)) or "none"
            raise ValueError(f"no link named {name!r} (links: {known})") from None

    async def add(self, link: str, fault: Fault) -> None:
        self._link(link).add(fault.scaled(self.scale))

    async def remove(self, link: str, name: str) -> None:
        target = self._link(link)
        if any(fault.name == name for fault in target.faults):
            target.remove(name)


class ControlFaults(FaultDriver):
    """The links of a proxy process, through its control API at ``url``
    (``http://host:port``); the proxy scales what it receives."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"proxy control must be an http:// URL, not {url!r}")
        self.url = url.rstrip("/")

    async def add(self, link: str, fault: Fault) -> None:
        status, text = await self._call("POST", f"/proxies/{link}/toxics", to_toxic(fault))
        if status >= 300:
            error = RuntimeError if status >= 500 else ValueError
            raise error(f"proxy control: adding {fault.name} to {link}: {status} {text[:200]}")

    async def remove(self, link: str, name: str) -> None:
        status, text = await self._call("DELETE", f"/proxies/{link}/toxics/{name}")
        if status >= 300 and status != 404:
            raise RuntimeError(f"proxy control: removing {name} from {link}: {status} {text[:200]}")

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=_CALL_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, self.url + path, json=body) as reply,
            ):
                return reply.status, await reply.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RuntimeError(f"proxy control {self.url} unreachable: {error!r}") from None

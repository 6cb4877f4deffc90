"""What a run puts on the cluster: the emulated control plane or the Go reference.

``RunOptions.clients`` chooses: ``python`` runs the emulated control plane
(:class:`~etcdlab.controlplane.plane.ControlPlane`), ``go`` the real Go clients
it stands for (:class:`~etcdlab.scenario.goclients.GoClients`). The engine
drives either through :class:`Components`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from etcdlab.common.clock import Clock
from etcdlab.common.timeline import Recorder
from etcdlab.controlplane.plane import ControlPlane, PlaneConfig
from etcdlab.scenario.goclients import GoClients

if TYPE_CHECKING:
    from etcdlab.scenario.engine import RunOptions


class Components(Protocol):
    churning: bool
    progress: dict[str, tuple[int, int]]

    def converged(self) -> bool: ...

    def leaders(self) -> dict[str, str]: ...

    def failed_tasks(self) -> list[BaseException]: ...

    async def close(self) -> None: ...


async def start(
    stack: contextlib.AsyncExitStack,
    oracle: Path | None,
    endpoints: Sequence[str],
    truth: Sequence[str] | None,
    clock: Clock,
    recorder: Recorder,
    config: PlaneConfig,
    options: RunOptions,
    progress: Callable[[str], None],
) -> Components:
    """Start the run's components (the Go reference's when ``oracle`` is its
    binary); ``stack`` closes them. ``config`` is the scaled plane config."""
    # Member i's client endpoint, so a request's ``member`` names an etcd member.
    recorder.timeline.settings["client_endpoints"] = list(endpoints)
    if oracle is not None:
        recorder.timeline.settings["clients"] = f"go ({oracle})"
        go = GoClients(oracle, endpoints, recorder, config, options.out)
        stack.push_async_callback(go.close)
        await go.start()
        progress(
            f"Go reference clients: {config.apiservers} apiservers, "
            f"{len(go.components)} leader-elected candidates; warming up"
        )
        return go
    recorder.timeline.settings["clients"] = "python"
    plane = ControlPlane(endpoints, clock, recorder, config, truth)
    stack.push_async_callback(plane.close)
    await plane.create_objects()
    plane.start()
    progress(
        f"control plane: {config.apiservers} apiservers, {len(plane.components)} "
        f"leader-elected candidates, {options.plane.objects} workload objects; warming up"
    )
    return plane

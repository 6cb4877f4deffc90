"""SIGINT and SIGTERM stop a command once, cleanly, whatever arrives during cleanup.

A terminal sends SIGINT; ``timeout``, ``docker stop`` and a cancelled CI job send
SIGTERM. Both mean "stop": the first one cancels the work (:func:`run`), and
every later one is noted and ignored, so that the cleanup the cancellation
started (stopping etcd members, deleting their data directories, writing a
partial report) runs to the end.
Once stopping, the process ignores them until it exits: it is on its way out.
A job that has done its work and is only cleaning up and writing its results
says so (:func:`finishing`): it is on its way out too, and a signal then stops
nothing, so even the first is noted and ignored, and the results stay whole.
SIGKILL is still there for anyone who cannot wait.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The command was stopped by ``signum``; its cleanup has run (or is running)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


# What the job under run() said it is doing now that its work is done (see
# finishing); None while it works. A list, so the job's context can fill it in.
_finishing: ContextVar[list[str] | None] = ContextVar("etcdlab_finishing", default=None)


def finishing(doing: str) -> None:
    """Tell :func:`run` that the job's work is done and what is left is ``doing``
    (its cleanup, writing its results): a signal from now on is noted and ignored.
    Cancelling the cleanup would stop nothing, and the results it writes are whole,
    so they and the exit status say the job completed. Outside :func:`run`, nothing."""
    said = _finishing.get()
    if said is not None:
        said.append(doing)


def _note(signum: int, first: bool) -> None:
    name = signal.Signals(signum).name
    if first:
        print(f"etcdlab: {name}: stopping and cleaning up", file=sys.stderr, flush=True)
    else:
        print(f"etcdlab: {name} again: still cleaning up, ignored", file=sys.stderr, flush=True)


def fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory if it is installed, else None (asyncio's own): the
    emulator must not be the bottleneck, and uvloop's loop has less overhead."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(
    job: Coroutine[Any, Any, T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """``asyncio.run(job)`` where the first SIGINT or SIGTERM cancels ``job`` (its
    ``finally`` blocks and context managers clean up) and later ones are ignored.
    Raises :class:`Stopped` if a signal came."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []
        done: list[str] = []
        _finishing.set(done)

        def on_signal(signum: int) -> None:
            if done and not received:
                name = signal.Signals(signum).name
                print(f"etcdlab: {name}: {done[-1]}: ignored", file=sys.stderr, flush=True)
                return
            _note(signum, first=not received)
            if not received:
                received.append(signum)
                task.cancel(signal.Signals(signum).name)

        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            # Removed when the loop closes, after every task has finished.
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            result = await job
        except asyncio.CancelledError:
            if received:
                raise Stopped(received[0]) from None
            raise
        if received:
            raise Stopped(received[0])
        return result

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(guarded())
    except Stopped:
        # Closing the loop put the default actions back.
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        raise

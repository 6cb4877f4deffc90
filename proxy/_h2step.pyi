"""Steps over HTTP/2 frame headers: the compiled twins of
:func:`etcdlab.proxy.h2frames.watch_frames` and
:class:`etcdlab.proxy.h2frames.Watcher` (``proxy/_h2step.c``)."""

from collections.abc import Callable
from typing import TypeVar

# The same interface as the reference's.
from etcdlab.proxy.h2frames import Watcher as Watcher

_F = TypeVar("_F")

def watch(
    data: bytes,
    pos: int,
    table: bytes,
    max_size: int,
    frame: Callable[[int, int, int, bytes], _F | None],
    out: list[_F],
) -> int: ...

"""Steps over HTTP/2 frame headers: the compiled twin of
:func:`etcdlab.proxy.h2frames.watch_frames` (``proxy/_h2step.c``)."""

from collections.abc import Callable
from typing import TypeVar

_F = TypeVar("_F")

def watch(
    data: bytes,
    pos: int,
    table: bytes,
    max_size: int,
    frame: Callable[[int, int, int, bytes], _F],
    out: list[_F],
) -> int: ...

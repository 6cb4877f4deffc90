"""Reading a child process's first line without waiting on it forever."""

from __future__ import annotations

import select
from typing import IO, AnyStr


def first_line(stream: IO[AnyStr], timeout: float, what: str) -> AnyStr:
    """The next line ``what`` writes to ``stream`` (a pipe), or TimeoutError if
    nothing comes within ``timeout`` seconds. A child that exits gives an
    empty line, as ``readline`` does at end of file. Past the first line, the
    stream must be unbuffered: a buffered one may hold lines ``select`` cannot see."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"{what} wrote nothing within {timeout:g} s")
    return stream.readline()

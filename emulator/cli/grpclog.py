"""gRPC's own logging, in a file instead of the terminal.

gRPC's C core logs through absl straight to file descriptor 2 (``GOAWAY ...
too_many_pings`` when a scaled keepalive meets etcd's ping policy, transport
errors under faults): no Python logger can catch it, and ``GRPC_VERBOSITY``
only chooses how much, read once when grpcio is imported. So the descriptor
itself is pointed at the log file for the length of a run, and Python's
``sys.stderr`` gets a descriptor of its own that still reaches the terminal. The
``grpc`` Python loggers go to the same file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def grpc_log_to(path: Path) -> Iterator[None]:
    """Everything written to descriptor 2 by native code, and the ``grpc`` loggers'
    records, go to ``path`` (truncated) while the block runs; ``sys.stderr`` keeps
    the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    previous = sys.stderr
    saved = os.dup(2)
    path.write_bytes(b"")
    # Appending, as the logging handler below does: neither overwrites the other.
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    terminal = open(  # noqa: SIM115 - closed in the finally below
        os.dup(saved), "w", buffering=1, encoding=previous.encoding, errors="backslashreplace"
    )
    sys.stderr = terminal
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("grpc")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        handler.close()
        terminal.flush()
        sys.stderr = previous
        terminal.close()
        os.dup2(saved, 2)
        os.close(saved)

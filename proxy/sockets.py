"""Socket options the proxy sets: no Nagle delay, and resets instead of closes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import cast


def nodelay(sock: socket.socket | None) -> None:
    """TCP_NODELAY: without it every small RPC waits ~40 ms on delayed ACKs."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _linger_zero(sock: socket.socket) -> None:
    """Make the next close send RST instead of FIN (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reset_socket(sock: socket.socket) -> None:
    _linger_zero(sock)
    sock.close()


def reset_transport(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        _linger_zero(sock)
    # uvloop's transports implement asyncio.Transport without subclassing it.
    cast(asyncio.Transport, transport).abort()

"""The etcd client's error classes: the analysis's three kinds, each keeping the gRPC status.

* :class:`ContextError`: the caller's deadline passed or the call was cancelled.
* :class:`ClusterUnavailableError`: the call met UNAVAILABLE (a lost
  connection, a keepalive timeout, a member without a leader) and was not
  retried (a write that may have been applied) or the retry policy gave up.
* :class:`ResponseError`: the server answered, but not with a usable result
  (a malformed reply or an error status that retrying cannot fix, such as
  INVALID_ARGUMENT or "lease not found").

:class:`CompactedError` is raised by watches whose start revision was compacted.
"""

from __future__ import annotations

import grpc

# Statuses that say "this endpoint could not serve the call right now": the
# connection failed, keepalive timed out, or etcd had no leader.
UNAVAILABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


class EtcdError(Exception):
    """Base of every error the etcd client raises.

    ``code`` is the gRPC status of the last attempt (None when no call was made),
    ``details`` its message, ``endpoint`` the endpoint that produced it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: str = "",
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        self.endpoint = endpoint


class ContextError(EtcdError):
    """The caller's deadline passed or the call was cancelled (CANCELLED, DEADLINE_EXCEEDED)."""


class ClusterUnavailableError(EtcdError):
    """No endpoint could serve the call: all attempts failed as unavailable.

    ``attempts`` counts the attempts made before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: str = "",
        endpoint: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, code=code, details=details, endpoint=endpoint)
        self.attempts = attempts


class ResponseError(EtcdError):
    """The server answered with an error retrying cannot fix, or a malformed reply."""


class CompactedError(EtcdError):
    """A watch asked for history older than the compacted revision.

    The caller must re-list and watch again from ``compact_revision`` or later.
    """

    def __init__(self, compact_revision: int, *, endpoint: str | None = None) -> None:
        super().__init__(
            f"required revision has been compacted (compact revision {compact_revision})",
            code=grpc.StatusCode.OUT_OF_RANGE,
            endpoint=endpoint,
        )
        self.compact_revision = compact_revision


def from_rpc_error(error: grpc.aio.AioRpcError, endpoint: str) -> EtcdError:
    """Classify a failed attempt (not taking retries into account)."""
    code = error.code()
    details = error.details() or ""
    message = f"{endpoint}: {code.name}: {details}"
    if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ContextError(message, code=code, details=details, endpoint=endpoint)
    if code in UNAVAILABLE_CODES:
        return ClusterUnavailableError(message, code=code, details=details, endpoint=endpoint)
    return ResponseError(message, code=code, details=details, endpoint=endpoint)

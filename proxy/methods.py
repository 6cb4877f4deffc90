"""gRPC method filters: which streams a fault limited to a method or service acts on."""

from __future__ import annotations

import json


def check_method(method: str | None) -> None:
    if method is not None and (not method or method.startswith("/")):
        raise ValueError(
            'method must look like "package.Service" or "package.Service/Method", '
            f"not {json.dumps(method)}"
        )


def method_matches(method: str | None, path: str | None) -> bool:
    """Does a stream calling ``path`` (``/pkg.Service/Method``) fall under ``method``
    (a full method, a service, or None for every stream)?"""
    if method is None:
        return True
    if path is None:
        return False
    name = path[1:]
    return name == method or name.startswith(method + "/")

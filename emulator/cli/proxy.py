"""``etcdlab proxy``: lives in :mod:`etcdlab.proxy.cli`, as the proxy imports nothing above it."""

from etcdlab.proxy.cli import register

__all__ = ["register"]

"""``etcdlab proxy``: the command lives in :mod:`proxy.cli` (proxy never imports emulator)."""

from proxy.cli import register

__all__ = ["register"]

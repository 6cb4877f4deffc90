"""Fault kinds, one per module, each registered by name in :mod:`.registry`.
Imports ``common`` and the rest of ``proxy`` only; no I/O (the links do it).

Importing the package imports every module in it, so a new kind is one new
file (and its test file); nothing else names it. Import a kind from its
module: ``from etcdlab.proxy.faults.loss import Loss``.
"""

import importlib
import pkgutil

from etcdlab.proxy.faults.base import BOTH, DOWNSTREAM, UPSTREAM, Fault, FrameFault, Shaper
from etcdlab.proxy.faults.registry import KINDS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BOTH", "DOWNSTREAM", "KINDS", "UPSTREAM", "Fault", "FrameFault", "Shaper"]

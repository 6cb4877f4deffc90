"""Scenario files, the engine that runs them against a proxied cluster, and the
election harness. Imports ``common``, ``protos``, ``proxy``, ``cluster``, ``client``,
``election``, ``controlplane`` and ``report`` only."""

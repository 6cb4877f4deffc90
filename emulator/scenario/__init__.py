"""Scenario files, the engine that runs them against a proxied cluster, and the
election harness. May import every layer below ``cli``."""

"""The pytest plugin and in-process fault proxies for users' own suites.
Imports ``common``, ``proxy``, ``cluster`` and ``client``."""

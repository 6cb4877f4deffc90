"""The ``etcdlab`` command: one module per subcommand, wired in ``main``."""

"""The ``etcdlab`` command: one module per subcommand, wired in ``main``.
Imports every other layer: ``common``, ``protos``, ``proxy``, ``cluster``,
``client``, ``election``, ``controlplane``, ``report``, ``scenario``, ``testing``,
``sweep`` and ``bench``."""

"""The settings sweep (``etcdlab sweep``): a grid of network conditions x settings
sets, each cell a scenario run several times with different seeds, their figures
aggregated into heatmaps and a recommendation per loss level; and the child
runs the benchmarks' sweeps share.

Imports ``common``, ``protos``, ``proxy``, ``cluster``, ``client``, ``election``,
``controlplane``, ``report`` and ``scenario``. The command line and the
benchmarks import it.
"""

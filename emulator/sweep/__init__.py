"""The settings sweep (``etcdlab sweep``): a grid of network conditions x settings
sets, each cell a scenario run several times with different seeds, their figures
aggregated into heatmaps and a recommendation per loss level.

May import: common, report, scenario and the layers below them (everything
below the command line but the testing layer). Imported by the CLI and the
benchmarks (their child runs: :func:`etcdlab.sweep.child.run_child`).
"""

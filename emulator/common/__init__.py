"""Shared vocabulary: the injectable clock, the time-scale rule, Go's token bucket,
the timeline's records, command-line argument types, and how a command stops on
SIGINT/SIGTERM. Imports nothing of etcdlab."""

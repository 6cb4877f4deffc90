"""Shared vocabulary: the injectable clock, the time-scale rule, the timeline's
records, and how a command stops on SIGINT/SIGTERM. Imports nothing of etcdlab."""

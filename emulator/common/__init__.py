"""Shared vocabulary: the injectable clock, the time-scale rule and the timeline's
records. Imports nothing else of etcdlab."""

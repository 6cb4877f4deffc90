"""Benchmarks: proxy overhead and fidelity, retry strategies. Results go to
``docs/BENCHMARKS.md``; nothing here is imported by the library."""

"""Benchmarks: proxy overhead and fidelity, retry strategies. Results go to
``docs/BENCHMARKS.md``; nothing but ``cli`` imports them. Imports ``common``,
``protos``, ``proxy``, ``cluster``, ``client``, ``election``, ``controlplane``,
``report``, ``scenario``, ``testing`` and ``sweep`` (the child runs)."""

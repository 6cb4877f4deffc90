"""etcdlab: real etcd under network faults, and asyncio emulations of the clients
that talk to it (the apiserver's etcd client, leader election, a control plane).

Layers, lowest first; a layer imports only those before it:

* ``common``: clock and time-scale rule, timeline records (imports nothing of etcdlab)
* ``protos``: generated etcd v3 stubs
* ``proxy``: the fault proxy (``common`` only)
* ``cluster``: local etcd members as child processes
* ``client``: the emulated apiserver etcd client
* ``election``, ``controlplane``: leader election; apiserver, informers, controllers
* ``report``: claims, verdicts, report pages
* ``scenario``: scenario files and the engine that runs them
* ``testing``, ``bench``: pytest plugin and in-process proxies; benchmarks
* ``cli``: the ``etcdlab`` command
"""

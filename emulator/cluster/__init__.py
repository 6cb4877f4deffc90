"""Local etcd clusters of real etcd processes, and child-process helpers.
Imports ``common`` and ``protos`` only."""

from etcdlab.cluster.local import LocalCluster, ServerFlags

__all__ = ["LocalCluster", "ServerFlags"]

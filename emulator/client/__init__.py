"""The emulated apiserver etcd client: connections, retries, leases, watches,
health checks. Imports ``common`` and ``protos`` only."""

from etcdlab.client.config import ClientConfig
from etcdlab.client.etcd import EtcdClient

__all__ = ["ClientConfig", "EtcdClient"]

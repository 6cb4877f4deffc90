"""etcdlab's emulator: real local etcd clusters and asyncio emulations of the
clients that talk to them (apiserver etcd client, leader election, controllers)."""

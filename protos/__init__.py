"""etcd v3 API: .proto sources written from etcd 3.5's published field numbers,
and the Python stubs generated from them (``make protos``). Imports nothing of etcdlab."""

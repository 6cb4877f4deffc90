"""The fault proxy: HTTP/2-aware network faults between etcd clients and members.
Imports ``common`` only."""

"""Leader election, both kinds a Kubernetes user meets. Imports ``common``,
``protos`` and ``client`` only.

``elector`` is client-go's ``tools/leaderelection`` (a lease record updated by
compare-and-swap, expiry judged on the local clock); ``concurrency`` is etcd's
own ``concurrency.Election`` (lease-bound keys, create revision as fencing
token); ``safety`` checks either for two leaders at once.
"""

"""The etcd lease lock's requests and its compare-and-swap, on ``MemoryKV`` (a
fake of etcd's Txn, not etcd: test_lock.py runs the same lock against real
members). Here each request's compare, flags and deadline are checked, and a
stale writer's refusal is exact.
"""

from __future__ import annotations

import pytest

from etcdlab.election.lock import EtcdLeaseLock, LockConflictError, LockNotFoundError
from etcdlab.election.record import LeaderElectionRecord
from tests.election.memory_kv import MemoryKV

RECORD = LeaderElectionRecord("a", 15, 1_700_000_000.0, 1_700_000_000.0)


def lock(kv: MemoryKV, timeout: float | None = 2.5) -> EtcdLeaseLock:
    return EtcdLeaseLock(kv, name="kcm", namespace="ns", timeout=timeout)


def test_the_lock_names_its_lease_and_key() -> None:
    held = lock(MemoryKV())
    assert held.key == b"/registry/leases/ns/kcm"
    assert held.describe() == "ns/kcm"
    assert held.revision is None
    assert EtcdLeaseLock(MemoryKV(), name="x").key == b"/registry/leases/kube-system/x"


async def test_get_without_a_record_says_where_it_looked() -> None:
    kv = MemoryKV()
    with pytest.raises(LockNotFoundError, match="no lease record at /registry/leases/ns/kcm"):
        await lock(kv).get()
    # A read is a repeatable call, with the lock's own deadline.
    assert kv.calls == [(True, 2.5)]


async def test_create_stores_the_lease_and_get_reads_it_back() -> None:
    kv = MemoryKV()
    writer, reader = lock(kv), lock(kv, timeout=None)
    await writer.create(RECORD)
    assert writer.revision == kv.revision == 2
    assert kv.calls == [(False, 2.5)]
    observed = await reader.get()
    assert observed.record == RECORD
    assert observed.raw == RECORD.to_lease("kcm", "ns") == kv.kvs[writer.key].value
    assert observed.revision == reader.revision == 2
    assert kv.calls[-1] == (True, None)


async def test_create_is_refused_when_a_record_exists() -> None:
    kv = MemoryKV()
    await lock(kv).create(RECORD)
    late = lock(kv)
    with pytest.raises(LockConflictError, match=r"^lease ns/kcm already exists$"):
        await late.create(RECORD)
    assert late.revision is None and kv.revision == 2


async def test_update_swaps_on_the_revision_last_seen() -> None:
    kv = MemoryKV()
    a, b = lock(kv), lock(kv)
    with pytest.raises(LockConflictError, match=r"^update before the record was read or created$"):
        await a.update(RECORD)
    assert kv.calls == []  # refused without a request
    await a.create(RECORD)
    await b.get()
    renewed = LeaderElectionRecord("a", 15, RECORD.acquire_time, RECORD.renew_time + 2)
    await a.update(renewed)
    assert a.revision == 3 and kv.calls[-1] == (False, 2.5)
    # b read at revision 2: its write would overwrite a's renewal, and is refused.
    taken = LeaderElectionRecord("b", 15, RECORD.acquire_time + 2, RECORD.acquire_time + 2, 1)
    with pytest.raises(LockConflictError, match=r"^lease ns/kcm changed since revision 2$"):
        await b.update(taken)
    assert b.revision == 2
    assert (await b.get()).record == renewed
    await b.update(taken)
    assert b.revision == 4 and (await a.get()).record == taken

"""EtcdLeaseLock and FencedWriter against real etcd."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from etcdlab.client.etcd import EtcdClient
from etcdlab.cluster.local import LocalCluster
from etcdlab.common.clock import MonotonicClock
from etcdlab.election.lock import EtcdLeaseLock, LockConflictError, LockNotFoundError
from etcdlab.election.record import LeaderElectionRecord
from etcdlab.election.safety import Fence, FencedWriter, SafetyChecker


def record(holder: str, transitions: int = 0) -> LeaderElectionRecord:
    return LeaderElectionRecord(holder, 15, 1e9, 1e9, transitions)


@pytest.fixture
async def kv(shared_cluster: LocalCluster) -> AsyncIterator[EtcdClient]:
    async with EtcdClient(shared_cluster.endpoints) as client:
        yield client


async def test_create_get_update_swap_on_the_mod_revision(kv: EtcdClient) -> None:
    name = f"lock-{uuid.uuid4().hex}"
    mine = EtcdLeaseLock(kv, name=name, timeout=5)
    theirs = EtcdLeaseLock(kv, name=name, timeout=5)
    assert mine.key == f"/registry/leases/kube-system/{name}".encode()
    with pytest.raises(LockNotFoundError):
        await mine.get()
    await mine.create(record("a"))
    with pytest.raises(LockConflictError, match="already exists"):
        await theirs.create(record("b"))
    observed = await theirs.get()
    assert observed.record == record("a") and observed.revision == mine.revision
    await mine.update(record("a", 0))  # mine still holds the latest revision
    with pytest.raises(LockConflictError, match="changed since revision"):
        await theirs.update(record("b", 1))
    await theirs.get()
    await theirs.update(record("b", 1))
    stored = await mine.get()
    assert stored.record.holder_identity == "b" and stored.revision == theirs.revision


async def test_update_before_any_read_is_refused(kv: EtcdClient) -> None:
    lock = EtcdLeaseLock(kv, name=f"lock-{uuid.uuid4().hex}")
    with pytest.raises(LockConflictError, match="before the record was read"):
        await lock.update(record("a"))


async def test_fenced_writer_blocks_writes_from_a_superseded_leader(
    kv: EtcdClient,
) -> None:
    name = f"lock-{uuid.uuid4().hex}"
    checker = SafetyChecker(MonotonicClock())
    old, new = EtcdLeaseLock(kv, name=name), EtcdLeaseLock(kv, name=name)
    await old.create(record("old"))
    assert old.revision is not None
    checker.started_leading("old", MonotonicClock().now(), old.revision)
    old_fence = Fence.on_record(old.key, old.revision, term=old.revision)
    target = f"/fenced/{name}".encode()
    old_writer = FencedWriter(kv, checker=checker, timeout=5)
    assert await old_writer.put(old_fence, target, b"from old")

    checker.stopped_leading("old", MonotonicClock().now())
    await new.get()
    await new.update(record("new", 1))
    assert new.revision is not None
    checker.started_leading("new", MonotonicClock().now(), new.revision)
    assert not await old_writer.put(old_fence, target, b"stale")
    new_writer = FencedWriter(kv, checker=checker, timeout=5)
    assert await new_writer.put(
        Fence.on_record(new.key, new.revision, new.revision), target, b"new"
    )

    got = await kv.get(target, timeout=5)
    assert got.kvs[0].value == b"new"
    report = checker.report()
    assert (report.writes, report.stale_writes_attempted, report.stale_writes_blocked) == (3, 1, 1)
    assert report.stale_writes_accepted == 0

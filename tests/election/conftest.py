"""The elector tests' world: a FakeClock, one in-memory record, and the candidates
made on it, stopped when the test ends (tests/memory_lock.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from etcdlab.common.clock import FakeClock
from tests.memory_lock import Candidate, MemoryStore, World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock, store, made = FakeClock(), MemoryStore(), list[Candidate]()
    yield clock, store, made
    for candidate in made:
        await candidate.stop()

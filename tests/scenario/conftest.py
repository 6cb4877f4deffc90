"""The Go reference for the differential tests, built while the other tests run.

When a collected test asks for ``oracle``, ``make oracle`` starts in the
background at the end of collection (one compile job, ``-p=1``, so the tests
running meanwhile keep a core); the fixture waits for it. No Go is a failure,
not a skip: CI must run the differential tests.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / ".build" / "etcdlab-oracle"
BUILD_LOG = ROOT / ".build" / "oracle-build.log"
BUILD_TIMEOUT = 900.0  # a cold build here takes 4-5 minutes on 2 cores

_build: subprocess.Popen[bytes] | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _build
    wanting = [i for i in session.items if "oracle" in getattr(i, "fixturenames", ())]
    if wanting and session.config.pluginmanager.hasplugin("timeout"):
        # The first test to ask waits for the build: its time limit (pytest-timeout,
        # setup included) is the build's on top of its own.
        own = session.config.getini("timeout")
        wanting[0].add_marker(pytest.mark.timeout(BUILD_TIMEOUT + float(own or 0)))
    if wanting and _build is None and shutil.which("go") is not None:
        BUILD_LOG.parent.mkdir(exist_ok=True)
        with BUILD_LOG.open("wb") as log:
            _build = subprocess.Popen(
                ["make", "-s", "oracle", "GOBUILDFLAGS=-p=1"],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _build is not None and _build.poll() is None:
        _build.terminate()
        _build.wait()


@pytest.fixture(scope="session")
def oracle() -> Iterator[Path]:
    """The freshly built ``etcdlab-oracle``."""
    if shutil.which("go") is None:
        pytest.fail("Go is not installed: the differential tests build the Go reference "
                    "(oracle/, Go 1.26; `make oracle`)")  # fmt: skip
    assert _build is not None
    try:
        code = _build.wait(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make oracle took over {BUILD_TIMEOUT:g} s; log: {BUILD_LOG}")
    if code != 0:
        tail = BUILD_LOG.read_text(errors="replace").splitlines()[-5:]
        pytest.fail(f"make oracle failed ({code}): {' | '.join(tail)}")
    yield ORACLE

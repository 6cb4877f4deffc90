"""The suite's guards in tests/conftest.py: require_tool and require (a skip on a
developer's machine, a failure under CI=true, where a missing tool is a broken
set-up), and the per-test timeout, which fails a hung async test on either
event loop with where it waited."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import require, require_tool

pytest_plugins = ["pytester"]

MISSING = "etcdlab-no-such-tool"


@pytest.mark.parametrize(
    ("ci", "outcome"), [(False, pytest.skip.Exception), (True, pytest.fail.Exception)]
)
def test_a_missing_tool_skips_or_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: bool, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(conftest, "IN_CI", ci)
    with pytest.raises(outcome, match=f"needs {MISSING} \\(apt-get install it\\)"):
        require_tool(MISSING, "apt-get install it")
    with pytest.raises(outcome, match="needs root"):
        require("needs root")
    require(None)


def test_a_tool_that_is_there_is_its_path() -> None:
    assert Path(require_tool("sh", "a POSIX shell")).name == "sh"


HANGS = """
import asyncio

import pytest
import uvloop


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request):
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


async def waits_forever():
    await asyncio.Event().wait()


async def test_hangs():
    await waits_forever()


def test_runs_after():
    pass
"""


def test_a_hung_async_test_fails_at_its_timeout_on_either_loop(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", str(root))
    pytester.makepyfile(test_hangs=HANGS)
    result = pytester.runpytest_subprocess(
        "-p", "tests.conftest", "-p", "no:cacheprovider", "--timeout=1",
        "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        timeout=60,
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=2)
    output = result.stdout.str()
    assert output.count("CancelledError: Timeout (>1.0s) from pytest-timeout") >= 2
    # Where it waited, not only the event loop's select().
    assert "in waits_forever" in output

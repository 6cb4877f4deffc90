"""tests/conftest.py's require_tool and require: a skip on a developer's machine,
a failure under CI=true, where a missing tool is a broken set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import require, require_tool

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

"""The first SIGINT/SIGTERM stops a job, unless the job said its work is done.

In-process, on asyncio's own loop: the test raises the signal at itself while
the job awaits, as a run's cleanup awaits its connections' close (which swallows
a cancellation: tests/cli/test_stopping.py has the command-line side).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest

from etcdlab.common import stopping
from tests.waiting import eventually


@pytest.fixture(autouse=True)
def handlers() -> Iterator[None]:
    """A stopped job leaves SIGINT and SIGTERM ignored (its process is on its way
    out); this process is pytest's, which needs its own back."""
    saved = {signum: signal.getsignal(signum) for signum in stopping.SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_signal_once_the_work_is_done_is_noted_and_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    said: list[str] = []

    def noted() -> bool:
        said.append(capsys.readouterr().err)
        return "ignored" in "".join(said)

    async def job() -> str:
        stopping.finishing("writing the results")
        signal.raise_signal(signal.SIGTERM)
        # Awaiting, as a cleanup does, while the signal is handled: not cancelled.
        await eventually(noted, 10, "the signal to be noted")
        return "whole"

    assert stopping.run(job()) == "whole"
    assert "".join(said) == "etcdlab: SIGTERM: writing the results: ignored\n"


def test_a_signal_while_working_stops_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    async def job() -> None:
        signal.raise_signal(signal.SIGINT)
        await asyncio.Event().wait()  # until the signal cancels it

    with pytest.raises(stopping.Stopped) as stopped:
        stopping.run(job())
    assert stopped.value.exit_code == 130
    assert capsys.readouterr().err == "etcdlab: SIGINT: stopping and cleaning up\n"

"""The loss bench's rafthttp-shaped stream: framing, its schedule, delay
accounting and its table without the kernel; then a short run of each side
(the kernel's needs root)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from typing import Any

import pytest

from etcdlab.bench import loss_fidelity as bench
from etcdlab.bench import raftstream
from etcdlab.scenario import kernel
from tests.conftest import require


@pytest.mark.parametrize("size", [raftstream.FRAME.size, raftstream.HEARTBEAT_BYTES, 3000])
def test_messages_decode_from_a_stream_cut_anywhere(size: int) -> None:
    wire = b"".join(raftstream.encode(n, 100.0 + n / 8, size) for n in range(3))
    assert len(wire) == 3 * size
    # The length prefix is rafthttp's: the bytes after it.
    assert int.from_bytes(wire[:8], "big") == size - 8
    for cut in range(len(wire) + 1):
        decoder = raftstream.Decoder()
        got = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert got == [(0, 100.0), (1, 100.125), (2, 100.25)]
    decoder = raftstream.Decoder()
    assert [m for byte in range(len(wire)) for m in decoder.feed(wire[byte : byte + 1])] == got


def test_a_message_too_small_for_its_stamp_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 24 bytes, not 23"):
        raftstream.encode(0, 0.0, 23)


def test_heartbeats_every_100_ms_and_the_rest_of_the_rate_appends_in_between() -> None:
    heartbeats = raftstream.schedule(10, 1)
    assert [at for at, _ in heartbeats] == pytest.approx([n / 10 for n in range(10)])
    assert {size for _, size in heartbeats} == {raftstream.HEARTBEAT_BYTES}
    mixed = raftstream.schedule(30, 2)
    assert len(mixed) == 60 and mixed == sorted(mixed)
    sizes = [size for _, size in mixed]
    assert sizes.count(raftstream.HEARTBEAT_BYTES) == 20
    assert sizes.count(raftstream.APPEND_BYTES) == 40
    appends = [at for at, size in mixed if size == raftstream.APPEND_BYTES]
    assert appends[:3] == pytest.approx([0.025, 0.075, 0.125])
    # Below the heartbeat rate every message is a heartbeat, at that rate.
    assert raftstream.schedule(4, 1) == [(n / 4, raftstream.HEARTBEAT_BYTES) for n in range(4)]


def tally(sends: list[tuple[float, float | None]]) -> raftstream.Tally:
    stream = raftstream.Tally()
    for sent, arrived in sends:
        sequence = stream.wrote(sent)
        if arrived is not None:
            stream.got(sequence, arrived)
    return stream


def test_delays_count_what_was_sent_in_the_run_and_wait_out_what_never_came() -> None:
    first = tally(
        [
            (9.0, 9.1),  # the warm-up: not counted
            (10.0, 10.01),
            (10.5, 13.0),  # sent in the run, arrived after it: backlog at the end
            (11.0, None),  # never arrived: its wait until the cut
            (11.5, 11.6),
        ]
    )
    second = tally([(10.0, 10.2), (12.0, 12.5)])  # sent after the end: not counted
    assert first.outstanding == 1 and second.outstanding == 0
    run = raftstream.summary([first, second], start=10.0, end=12.0, cut=20.0)
    assert run["delays"] == pytest.approx([0.01, 2.5, 9.0, 0.1, 0.2])
    assert (run["delivered"], run["backlog"], run["undelivered"]) == (3, 2, 1)
    # The longest silence: the second stream heard nothing from 10.2 to the end
    # (the first from 10.01 to 11.6).
    assert run["silence"] == pytest.approx(1.8)
    assert run["seconds"] == 2.0


def test_a_stream_that_hears_nothing_is_silent_for_the_whole_run() -> None:
    run = raftstream.summary([tally([(1.0, None)])], start=0.0, end=5.0, cut=8.0)
    assert run["silence"] == 5.0 and run["delays"] == [7.0] and run["backlog"] == 1


def test_recovery_counts_from_the_heal_what_was_on_the_way_and_the_first_message_after() -> None:
    # Two streams healed at 20.0; each stream's messages from its mark on were
    # written after the heal.
    first = tally([(18.0, 18.1), (19.0, 20.5), (19.5, 20.5), (20.0, 20.5), (20.1, 20.6)])
    second = tally([(18.0, 18.2), (19.9, 19.95), (20.0, 21.25)])
    healed = raftstream.recovery([first, second], marks=[3, 2], heal=20.0)
    assert healed == {"backlog": 2, "drained": pytest.approx(0.5), "first": pytest.approx(1.25)}
    # Nothing on the way at the heal: drained at once; a stream that never got
    # a message written after the heal, or one before it, never recovered.
    assert raftstream.recovery([second], [2], 20.0) == {
        "backlog": 0,
        "drained": 0.0,
        "first": pytest.approx(1.25),
    }
    lost = tally([(19.0, None), (20.0, None)])
    assert raftstream.recovery([lost], [1], 20.0) == {"backlog": 1, "drained": None, "first": None}
    # The heal came before anything was written after it.
    assert raftstream.recovery([second], [3], 20.0)["first"] is None


def healed_run(backlog: int, drained: float | None, first: float | None) -> dict[str, Any]:
    run = stream_run([0.1], 1, backlog, 0.1)
    run["heal"] = {"backlog": backlog, "drained": drained, "first": first, "at": 0.0}
    return run


def test_recovery_figures_are_taken_over_runs_and_a_run_that_never_recovered_counts_as_never() -> (
    None
):
    kernel = [healed_run(4, 0.2, 0.3), healed_run(8, 1.0, 1.2), healed_run(0, 0.0, 0.05)]
    shown = bench.heal_figures(kernel)
    assert shown == {
        "backlog p50": 4,
        "backlog max": 8,
        "drained p50": 0.2,
        "drained p90": 1.0,
        "drained max": 1.0,
        "first p50": 0.3,
        "first p90": 1.2,
        "first max": 1.2,
        "never": 0,
    }
    proxy = [healed_run(4, 0.4, 0.6), healed_run(8, None, None), healed_run(0, 0.0, 0.05)]
    assert bench.heal_figures(proxy)["first max"] == math.inf
    ratio = bench.heal_ratios(kernel, proxy)
    assert ratio["first p50"] == 2.0 and ratio["first max"] == math.inf
    assert ratio["never"] == math.inf and ratio["backlog max"] == 1.0
    # Where both never recovered, as alike as can be.
    assert bench.heal_ratios(proxy, proxy)["drained max"] == 1.0
    saved = {
        "seconds": 10.0,
        "cells": [
            {"workload": "stream", "clients": 1, "rate": 10, "loss": 0.3, "heal": 60,
             "runs": {"kernel": kernel, "proxy": proxy},
             "loads": {"kernel": [1.0], "proxy": [2.0]}},
        ],
    }  # fmt: skip
    lines = bench.table(saved).splitlines()
    assert "| 10/s | 1 | 30% | 60 s | 3 | kernel | 4.0 | 8.0 | 200.0 ms | 1.00 s |" in lines[-3]
    assert lines[-2].endswith("| never | never | 1 | 2.0-2.0 |")
    assert lines[-1].startswith("| | | | | | proxy / kernel | 1.00 | 1.00 | **2.00** |")
    # p90 is the nearest rank: of ten runs the ninth, not the highest.
    ten = [healed_run(0, None if n == 9 else n / 10, n / 10) for n in range(10)]
    assert bench.heal_figures(ten)["drained p90"] == 0.8
    assert bench.heal_figures(ten)["drained max"] == math.inf


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heal", "-1"], "--heal must be a positive number of seconds, not -1"),
        (["--heal", "nan"], "--heal must be a positive number of seconds, not nan"),
        (["--heal", "soon"], "argument --heal: invalid float value: 'soon'"),
        (["--heal", "30", "--workload", "stream", "put"], "--heal: only the stream workload"),
    ],
)
def test_bad_heal_input_is_one_line(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.argv", ["loss_fidelity", "--workload", "stream", *args])
    with pytest.raises(SystemExit) as exit_info:
        bench.parse()
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def stream_run(delays: list[float], delivered: int, backlog: int, silence: float) -> dict[str, Any]:
    return {
        "seconds": 10.0,
        "delays": delays,
        "delivered": delivered,
        "backlog": backlog,
        "undelivered": 0,
        "silence": silence,
    }


def test_stream_figures_pool_runs_and_keep_the_spread() -> None:
    runs = [
        stream_run([0.01] * 90 + [2.0] * 10, 95, 5, 2.5),
        stream_run([0.01] * 100, 100, 0, 0.2),
    ]
    shown = bench.figures(runs, 10.0)
    assert shown["offered/s"] == (10.0, 10.0, 10.0)
    assert shown["delivered/s"] == (9.75, 9.5, 10.0)
    assert shown["> 1 s"] == (0.05, 0.0, 0.1)
    assert shown["max"] == (2.0, 0.01, 2.0)
    assert shown["backlog"] == (2.5, 0.0, 5.0)  # per run
    assert shown["silence"] == (2.5, 0.2, 2.5)
    assert bench.count(runs) == 200
    # Both sides without a backlog: as good as the kernel, not infinitely worse.
    ratio = bench.ratios(runs[1:], runs[1:], 10.0)
    assert ratio["backlog"] == 1.0 and ratio["p50"] == 1.0
    assert bench.ratios(runs[1:], runs[:1], 10.0)["backlog"] == math.inf


def test_the_table_gives_calls_and_streams_a_header_each() -> None:
    calls = {"kernel": [[0.01, 0.2]], "proxy": [[0.01, 0.1]]}
    streams = {"kernel": [stream_run([1.0], 1, 0, 1.0)], "proxy": [stream_run([0.5], 1, 0, 0.5)]}
    loads = {"kernel": [1.0], "proxy": [2.0]}

    def cell(workload: str, rate: float, loss: float, runs: dict[str, Any]) -> dict[str, Any]:
        clients = 1 if workload == "stream" else 8
        return {"workload": workload, "clients": clients, "rate": rate, "loss": loss,
                "runs": runs, "loads": loads}  # fmt: skip

    cells = [
        cell("put", 0, 0.3, calls),
        cell("stream", 30, 0.3, streams),
        cell("stream", 10, 0.1, streams),
    ]
    saved = {"seconds": 10.0, "cells": cells}
    lines = bench.table(saved).splitlines()
    heads = [line for line in lines if line.startswith("| workload")]
    assert len(heads) == 2 and "calls/s" in heads[0] and "delivered/s" in heads[1]
    assert "| stream 30/s | 1 | 30% | kernel | 0.1 [0.1-0.1] | 0.1 [0.1-0.1] | 1.00 s" in "\n".join(
        lines
    )
    assert "| | | | proxy / kernel | 1.00 | 1.00 | **0.50** | **0.50** |" in "\n".join(lines)


@pytest.mark.parametrize("workload", [bench.STREAM, "put"])
def test_the_run_inside_the_namespace_is_handed_its_job(
    workload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = bench.Job(0.2, workload, 3, 5.0, 0, 1.0, False, rate=30.0 if workload == "stream" else 0)
    monkeypatch.setattr("sys.argv", ["loss_fidelity", *bench.inner_arguments(job)])
    args = bench.parse()
    assert args.inner and args.loss == [0.2] and args.workload == [workload]
    assert args.clients == [3] and args.seconds == 5.0
    assert args.rate == ([30.0] if workload == "stream" else [10.0, 30.0, 100.0])
    assert args.heal == 0.0
    healing = dataclasses.replace(job, workload=bench.STREAM, rate=30.0, heal=45.0)
    monkeypatch.setattr("sys.argv", ["loss_fidelity", *bench.inner_arguments(healing)])
    assert bench.parse().heal == 45.0


def short_job(loss: float) -> bench.Job:
    return bench.Job(loss, bench.STREAM, 2, 1.0, 0, 1.0, False, rate=30.0)


def test_the_proxy_side_delivers_every_message_of_each_stream() -> None:
    run = bench.run_proxy(short_job(0.3))
    assert isinstance(run, dict)
    assert len(run["delays"]) == 2 * 30 and run["undelivered"] == 0
    assert run["delivered"] + run["backlog"] == 60
    assert min(run["delays"]) > 0


def test_the_kernel_side_runs_in_a_namespace_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = kernel.unavailable()
    require(None if missing is None else f"kernel side {missing}")
    # The namespaces this run adds, by name: other benches on the machine
    # add and delete their own meanwhile.
    added: list[str] = []
    run_command = subprocess.run

    def recording(command: list[str], *args: Any, **kwargs: Any) -> Any:
        if command[:3] == ["ip", "netns", "add"]:
            added.append(command[3])
        return run_command(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    run = bench.run_kernel(dataclasses.replace(short_job(0.3), clients=1))
    assert isinstance(run, dict)
    # Every message is accounted for; at 30% both ways the kernel may still
    # hold some after the drain (a chain of timeouts outlasts it).
    assert len(run["delays"]) == 30 and run["delivered"] + run["backlog"] == 30
    assert len(added) == 1 and added[0] not in namespaces()


def check_recovered(run: object, streams: int, loss: float, wait: float) -> None:
    """A healed run: every message sent in the lossy part arrived, and the
    recovery is in order (what was on the way drained no later than the first
    message written after the heal arrived, which was within the wait). Under
    total loss nothing arrived before the heal: only the heal let it through."""
    assert isinstance(run, dict)
    assert len(run["delays"]) == streams * 30 and run["undelivered"] == 0
    healed = run["heal"]
    assert healed["backlog"] == run["backlog"]
    assert 0 <= healed["drained"] <= healed["first"] < wait
    if loss == 1:
        assert healed["backlog"] == streams * 30 and healed["drained"] > 0


@pytest.mark.parametrize("loss", [0.3, 1.0])
def test_the_proxy_side_times_the_recovery_after_removing_its_fault(loss: float) -> None:
    run = bench.run_proxy(dataclasses.replace(short_job(loss), heal=30.0))
    check_recovered(run, 2, loss, 30.0)


@pytest.mark.parametrize("loss", [0.3, 1.0])
def test_the_kernel_side_times_the_recovery_after_deleting_its_rule(loss: float) -> None:
    missing = kernel.unavailable()
    require(None if missing is None else f"kernel side {missing}")
    run = bench.run_kernel(dataclasses.replace(short_job(loss), clients=1, heal=60.0))
    check_recovered(run, 1, loss, 60.0)


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}

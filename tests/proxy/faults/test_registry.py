"""A fault kind is one class: registered, it is parsed from the command line, TOML
and the control API's JSON, shown as a toxic, scaled and run by a link, with
nothing else naming it."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import tomllib
from dataclasses import dataclass

import pytest

from etcdlab.common.timescale import TimeScale
from etcdlab.proxy.cli import register, spec_from_args, spec_from_toml
from etcdlab.proxy.faults import KINDS
from etcdlab.proxy.faults.base import Alias, Flag, Piece, ShapeContext, Shaper, duration, method
from etcdlab.proxy.faults.registry import (
    from_keywords,
    from_table,
    from_toxic,
    registered,
    to_toxic,
)
from etcdlab.proxy.link import Address, ProxyLink


@dataclass(frozen=True, eq=False)
class Stutter(Shaper):
    """A throwaway kind: every chunk waits ``pause``, ``times`` times over."""

    kind = "stutter"
    flags = (Flag("--stutter", "pause", "a stutter per chunk, e.g. 20ms"),)
    aliases = (Alias("hiccup", {"loud": True}),)
    pause: float = duration(None)  # required
    times: int = 1
    method: str | None = method()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.times < 1:
            raise ValueError("times must be at least 1")

    def shape(self, pieces: list[Piece], ctx: ShapeContext) -> list[Piece]:
        for piece in pieces:
            piece.release += self.pause * self.times
        return pieces


@pytest.fixture
def stutter() -> object:
    with registered(Stutter):
        yield Stutter
    assert "stutter" not in KINDS


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["proxy", "--listen", "127.0.0.1:0", "--upstream", "h:1", *args])


def test_json_and_toml_carry_milliseconds(stutter: object) -> None:
    toxic = {"type": "stutter", "stream": "upstream", "attributes": {"pause": 20, "times": 2}}
    fault = from_toxic(toxic)
    assert isinstance(fault, Stutter)
    assert (fault.pause, fault.times, fault.direction, fault.name) == (
        0.02,
        2,
        "upstream",
        "stutter_upstream",
    )
    assert to_toxic(fault) == {**toxic, "name": "stutter_upstream", "toxicity": 1.0}
    table = tomllib.loads('type = "stutter"\npause = 20\nmethod = "etcdserverpb.KV"\n')
    from_file = from_table(table)
    assert isinstance(from_file, Stutter) and from_file.direction == "both"
    assert from_file.method_filter == "etcdserverpb.KV" and from_file.frame_aware
    hiccup = from_toxic({"type": "hiccup", "attributes": {"pause": 1, "loud": True}})
    assert isinstance(hiccup, Stutter)
    config = (
        '[[links]]\nname = "a"\nupstream = "h:1"\n[[links.faults]]\ntype = "stutter"\npause = 5\n'
    )
    (link,) = spec_from_toml(config, parse()).links
    (only,) = link.faults
    assert isinstance(only, Stutter) and only.pause == 0.005


@pytest.mark.parametrize(
    "toxic, message",
    [
        ({"type": "stutter", "attributes": {"pause": "abc"}}, "pause must be a finite number of"),
        ({"type": "stutter", "attributes": {"pause": 1, "times": 1.5}}, "times must be a whole"),
        ({"type": "stutter", "attributes": {"pause": 1, "times": 0}}, "times must be at least"),
        (
            {"type": "stutter", "attributes": {}},
            "^a stutter fault needs pause: give it milliseconds >= 0$",
        ),
        ({"type": "stutter", "attributes": {"pause": 1, "paws": 1}}, "unknown attribute.*paws"),
        ({"type": "stutter", "stream": "sideways", "attributes": {"pause": 1}}, "^stream"),
        ({"type": "stutter", "toxicity": "all", "attributes": {"pause": 1}}, "^toxicity"),
        ({"type": "hiccup", "attributes": {"pause": 1, "loud": False}}, "^loud"),
        ({"type": "stutter", "attributes": {"pause": 1, "method": 3}}, "^method must be a str"),
    ],
)
def test_bad_json_names_the_field(stutter: object, toxic: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_toxic(toxic)


def test_command_line_flags_and_fault_specs(stutter: object) -> None:
    (flagged,) = spec_from_args(parse("--stutter", "20ms", "--method", "a.B")).links[0].faults
    assert isinstance(flagged, Stutter) and (flagged.pause, flagged.method) == (0.02, "a.B")
    (spelled,) = (
        spec_from_args(parse("--fault", "stutter:pause=1.5s,times=3,stream=downstream,name=s"))
        .links[0]
        .faults
    )
    assert isinstance(spelled, Stutter)
    assert (spelled.pause, spelled.times, spelled.direction, spelled.name) == (
        1.5,
        3,
        "downstream",
        "s",
    )
    with pytest.raises(ValueError, match="--stutter: a duration needs a unit"):
        spec_from_args(parse("--stutter", "20"))
    with pytest.raises(ValueError, match="--fault stutter:pause=1ms,times=x: times: must be a wh"):
        spec_from_args(parse("--fault", "stutter:pause=1ms,times=x"))
    with pytest.raises(ValueError, match='unknown fault kind "stammer"'):
        spec_from_args(parse("--fault", "stammer"))
    with pytest.raises(ValueError) as missing:
        spec_from_args(parse("--fault", "stutter:times=2"))
    assert str(missing.value) == (
        "--fault stutter:times=2: a stutter fault needs pause: give it a duration with a "
        "unit, like 50ms"
    )
    # A negative duration after its flag is the flag's value, refused by name.
    with pytest.raises(ValueError, match=r"^--stutter: must not be negative, not '-5ms'$"):
        spec_from_args(parse("--stutter", "-5ms"))


def test_python_keywords_are_seconds(stutter: object) -> None:
    fault = from_keywords("stutter", {"pause": 0.5, "direction": "upstream"})
    assert isinstance(fault, Stutter) and (fault.pause, fault.direction) == (0.5, "upstream")
    with pytest.raises(ValueError, match="pause must be a number"):
        from_keywords("stutter", {"pause": "0.5"})
    with pytest.raises(ValueError, match=r"^a stutter fault needs pause: give it seconds >= 0$"):
        from_keywords("stutter", {"times": 2})


async def test_a_link_runs_it_scaled(stutter: object, echo: Address) -> None:
    fault = Stutter(pause=0.4, times=2, direction="upstream").scaled(TimeScale(0.25))
    assert fault.pause == 0.1 and to_toxic(fault)["attributes"]["pause"] == 400
    async with ProxyLink("raw", echo, http2=False) as link:
        link.add(fault)
        reader, writer = await asyncio.open_connection(*link.address)
        started = time.monotonic()
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        # uvloop's clock and timers have millisecond resolution.
        assert time.monotonic() - started >= 0.2 - 0.002
        writer.close()
    with pytest.raises(
        ValueError,
        match=re.escape('method: a method filter needs HTTP/2, and proxy "raw" is raw TCP'),
    ):
        ProxyLink("raw", echo, http2=False).add(Stutter(pause=0.1, method="a.B"))

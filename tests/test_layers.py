"""The tree is the architecture: each layer imports only the layers below it.

Read from the sources with ``ast``, so a wrong import fails here before anything
runs. The rules are the ones each package's docstring states (its sentence
``Imports ...``), and a test holds the two together. ``tests/`` mirrors the packages.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each part of the ``etcdlab`` package lives in the repository.
FOLDERS = {"etcdlab": "emulator", "etcdlab.proxy": "proxy", "etcdlab.protos": "protos",
           "etcdlab.bench": "bench"}  # fmt: skip

BELOW_CLI = {"common", "protos", "proxy", "cluster", "client", "election", "controlplane",
             "report", "scenario", "testing"}  # fmt: skip
# Layer -> the layers it may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "": {""},  # etcdlab/__init__.py
    "common": {"common"},
    "protos": {"protos"},
    "proxy": {"common", "proxy"},
    "cluster": {"common", "protos", "cluster"},
    "client": {"common", "protos", "client"},
    "election": {"common", "protos", "client", "election"},
    "controlplane": {"common", "protos", "client", "election", "controlplane"},
    "report": {"common", "report"},
    "scenario": BELOW_CLI - {"testing"},
    "testing": {"common", "proxy", "cluster", "client", "testing"},
    "sweep": BELOW_CLI - {"testing"} | {"sweep"},
    "bench": BELOW_CLI | {"bench", "sweep"},
    "cli": BELOW_CLI | {"bench", "sweep", "cli"},
}
# Sans-IO protocol code: bytes in, decisions out; the links do the I/O. Every
# fault kind is a decision too (its effect is a role the link plays).
SANS_IO = ("proxy/h2frames.py", "proxy/hpackpaths.py", "proxy/grpcwire.py",
           "proxy/streamlanes.py", "proxy/methods.py", "proxy/plan.py",
           "proxy/faults/*.py")  # fmt: skip
IO_MODULES = ("asyncio", "socket", "selectors", "uvloop", "aiohttp")
OLD_NAMES = ("emulator", "proxy", "protos", "bench")


def modules() -> Iterator[tuple[str, Path]]:
    """(module name, path) of every module of the installed package."""
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "etcdlab" and parts and parts[0] in ("proxy", "protos", "bench"):
                continue
            yield name, path


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    return "cli" if parts[1] == "__main__" else parts[1]


def imported(source: str, module: str) -> Iterator[tuple[int, str]]:
    """Every absolute module name ``source`` imports, relative imports resolved."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, node.module or ""]).rstrip(".")
            elif node.module is not None:
                yield node.lineno, node.module
                # "from etcdlab import report" imports the layer it names.
                for alias in node.names:
                    if node.module == "etcdlab":
                        yield node.lineno, f"etcdlab.{alias.name}"


def violations(module: str, source: str) -> list[str]:
    found = []
    own = layer(module)
    for line, name in imported(source, module):
        top = name.split(".")[0]
        if top in OLD_NAMES:
            found.append(f"{module}:{line} imports {name}: the package is etcdlab.{name}")
        elif top == "etcdlab" and name != "etcdlab" and layer(name) not in ALLOWED[own]:
            found.append(f"{module}:{line} ({own or 'etcdlab'}) imports {name} ({layer(name)})")
    return found


def test_every_layer_imports_only_layers_below_it() -> None:
    found = [v for name, path in modules() for v in violations(name, path.read_text())]
    assert found == []


def test_a_wrong_import_is_caught() -> None:
    # The checker itself, on imports that break each kind of rule.
    assert violations("etcdlab.proxy.link", "from etcdlab.client.etcd import EtcdClient\n")
    assert violations("etcdlab.client.etcd", "import etcdlab.scenario.engine\n")
    assert violations("etcdlab.report.claims", "from etcdlab import scenario\n")
    assert violations("etcdlab.controlplane.plane", "from emulator.clock import Clock\n")
    assert violations("etcdlab.client.lease", "from ..scenario import engine\n")
    assert not violations("etcdlab.scenario.engine", "from etcdlab.report import render\n")


def test_a_violation_names_the_line_and_both_layers() -> None:
    wrong = "from etcdlab.controlplane import ratelimit\n"
    assert violations("etcdlab.report.recovery", wrong) == [
        "etcdlab.report.recovery:1 (report) imports etcdlab.controlplane (controlplane)"
    ]


def io_users(paths: list[Path]) -> list[str]:
    return [
        f"{path.name}:{line} imports {name}"
        for path in paths
        for line, name in imported(path.read_text(), "etcdlab.proxy.x")
        if name.split(".")[0] in IO_MODULES
    ]


def test_protocol_code_does_no_io() -> None:
    paths = [path for pattern in SANS_IO for path in sorted(ROOT.glob(pattern))]
    assert len(paths) > len(SANS_IO)
    assert io_users(paths) == []


def test_the_io_check_catches_asyncio(tmp_path: Path) -> None:
    sneaky = tmp_path / "frames.py"
    sneaky.write_text("def f() -> None:\n    import asyncio\n")
    assert io_users([sneaky]) and not io_users([ROOT / "proxy/h2frames.py"])


def stated_imports(docstring: str) -> set[str] | None:
    """The layers a package docstring's ``Imports ...`` sentence names."""
    match = re.search(r"\bImports\b([^.]*)\.", " ".join(docstring.split()))
    if match is None:
        return None
    return set(re.findall(r"``(\w+)``", match.group(1)))


def test_each_package_docstring_states_its_import_rule() -> None:
    wrong = {}
    for name, path in modules():
        if path.name != "__init__.py" or name == "etcdlab":
            continue
        own = layer(name)
        stated = stated_imports(ast.get_docstring(ast.parse(path.read_text())) or "")
        allowed = ALLOWED[own] - {own}
        if stated is None or stated - {own} != allowed:
            wrong[name] = (stated, allowed)
    assert wrong == {}


def test_tests_mirror_the_packages() -> None:
    # etcdlab.proxy.faults -> tests/proxy/faults; every layer has its folder.
    packages = {name.removeprefix("etcdlab.").replace(".", "/")
                for name, path in modules() if path.name == "__init__.py"}  # fmt: skip
    folders = {path.parent.relative_to(ROOT / "tests").as_posix()
               for path in (ROOT / "tests").rglob("*/__init__.py")}  # fmt: skip
    assert folders - packages == set()
    assert {layer for layer in ALLOWED if layer} - folders == set()


def test_every_package_folder_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == FOLDERS
    folders = {name for name, path in modules() if path.name == "__init__.py"}
    assert set(config["packages"]) == folders


def test_the_control_plane_reports_through_its_listener() -> None:
    # As the elector does: the recorder that writes the timeline is the
    # caller's choice (controlplane/listener.py), never imported here.
    named = [
        f"{path.name}: {alias.name}"
        for path in sorted((ROOT / "emulator/controlplane").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name == "Recorder"
    ]
    assert named == []

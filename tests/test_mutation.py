"""`make mutation`'s module table and workspace (tests/mutation.py), without
running mutmut: a renamed module or test file fails here, not an hour into a run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests import mutation

ROOT = Path(__file__).resolve().parents[1]


def source(package_path: str) -> Path:
    """Where a path inside the installed package lives in the repository."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    dotted = package_path.removesuffix(".py").replace("/", ".")
    package = max((p for p in folders if dotted.startswith(p + ".")), key=len)
    return ROOT / folders[package] / (dotted.removeprefix(package + ".").replace(".", "/") + ".py")


@pytest.mark.parametrize("name", list(mutation.MODULES))
def test_each_module_and_its_tests_exist(name: str) -> None:
    module = mutation.MODULES[name]
    assert source(module.path).is_file(), module.path
    files = [t for t in module.tests if t.startswith("tests/")]
    assert files and all((ROOT / t).is_file() for t in files), files


def test_an_unknown_module_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        mutation.main(["claims", "nonsense"])
    assert stopped.value.code == 2
    assert "MODULES: unknown module 'nonsense'" in capsys.readouterr().err


def test_the_workspace_is_the_package_as_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mutation, "WORKSPACES", tmp_path)
    where = mutation.workspace("watchcache", mutation.MODULES["watchcache"])
    for inside in ("etcdlab/controlplane/apiserver.py", "etcdlab/proxy/faults/loss.py",
                   "etcdlab/protos/rpc_pb2.py", "tests/synthetic.py"):  # fmt: skip
        assert (where / inside).is_file(), inside
    assert not list(where.rglob("__pycache__"))
    settings = tomllib.loads((where / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert settings["only_mutate"] == ["etcdlab/controlplane/apiserver.py"]
    assert settings["pytest_add_cli_args_test_selection"] == [
        "tests/controlplane/test_informer_cache.py"
    ]
    (pattern,) = settings["do_not_mutate_patterns"]
    assert re.search(pattern, '        log.info("%s: failed: %s", self.name, error)')
    assert not re.search(pattern, "    log.info(")  # a call over several lines is mutated
    assert mutation.mutant_pattern(mutation.MODULES["watchcache"]) == (
        "etcdlab.controlplane.apiserver.xǁWatchCacheǁ*"
    )

"""Regenerate the Python stubs from the .proto files in this package.

Run as ``python -m etcdlab.protos.generate [OUT_DIR]``; the drift test calls
:func:`generate` with a temporary directory and compares the results. The
protos are compiled as ``etcdlab/protos/*.proto`` so that the stubs import each
other as ``etcdlab.protos`` (the package's installed name, whatever folder the
sources sit in).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
IMPORT_PATH = Path("etcdlab", "protos")
PROTO_FILES = ("kv.proto", "auth.proto", "rpc.proto")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generated_names() -> list[str]:
    return [
        proto.removesuffix(".proto") + suffix
        for proto in PROTO_FILES
        for suffix in GENERATED_SUFFIXES
    ]


def generate(out_dir: Path) -> None:
    """Write the stubs for every proto under ``out_dir/etcdlab/protos/``."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    # mypy-protobuf installs its plugins beside the interpreter, which may not
    # be on PATH when the venv is not activated.
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as include:
        sources = Path(include, IMPORT_PATH)
        sources.mkdir(parents=True)
        for name in PROTO_FILES:
            shutil.copyfile(PACKAGE_DIR / name, sources / name)
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
                f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
                f"-I{include}",
                f"--python_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                f"--mypy_out={out_dir}",
                f"--mypy_grpc_out={out_dir}",
                *(str(sources / name) for name in PROTO_FILES),
            ]
        )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")


def main(argv: list[str]) -> int:
    if argv:
        generate(Path(argv[0]))
        return 0
    with tempfile.TemporaryDirectory() as out:
        generate(Path(out))
        for name in generated_names():
            shutil.copyfile(Path(out, IMPORT_PATH, name), PACKAGE_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

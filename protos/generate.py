"""Regenerate the Python stubs from the .proto files in this package.

Run as ``python -m protos.generate [OUT_DIR]``; the drift test calls
:func:`generate` with a temporary directory and compares the results.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
PROTO_FILES = ("kv.proto", "auth.proto", "rpc.proto")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generated_names() -> list[str]:
    return [
        proto.removesuffix(".proto") + suffix
        for proto in PROTO_FILES
        for suffix in GENERATED_SUFFIXES
    ]


def generate(out_dir: Path) -> None:
    """Write the stubs for every proto under ``out_dir/protos/``."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    # mypy-protobuf installs its plugins beside the interpreter, which may not
    # be on PATH when the venv is not activated.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{REPO_ROOT}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(PACKAGE_DIR / name) for name in PROTO_FILES),
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO_ROOT
    generate(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

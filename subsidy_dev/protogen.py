"""Generate the Python code of proto/ into subsidy/v1/ (``make proto``).

The generated files are not committed: they are rebuilt by ``make`` with the
grpcio-tools version that pyproject.toml pins, which is the one the runtime
(protobuf, grpcio) is pinned to match. ``tests/unit/test_contract.py``
regenerates into a temporary directory and compares, so a stale copy fails.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    written = []
    for package_dir in {(out_dir / s).parent for s in sources}:
        init = package_dir / "__init__.py"
        init.write_text('"""Generated from proto/ by `make proto`; do not edit."""\n')
        written.extend(sorted(package_dir.glob("*.py*")))
    return written


def generated_tree(out_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out_dir)): p.read_bytes()
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }


def stale_files() -> list[str]:
    """Names of generated files that differ from what proto/ generates now."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh = generated_tree(out)
    current = {name: (REPO_ROOT / name).read_bytes() for name in fresh if (REPO_ROOT / name).is_file()}
    return sorted(name for name in fresh if current.get(name) != fresh[name])


def main() -> None:
    written = generate(REPO_ROOT)
    print(f"generated {len(written)} files from {len(proto_files())} protos", file=sys.stderr)


if __name__ == "__main__":
    main()

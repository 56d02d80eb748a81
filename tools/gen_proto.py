"""Regenerate the Python code for the public contract in proto/.

Usage: python tools/gen_proto.py [--out DIR]

Writes nextbest/v1/ by default, as protoc writes it: the modules import each
other as `nextbest.v1.X_pb2`, which is where the package installs them.
tests/test_proto.py fails when the committed code differs from a fresh
generation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_PACKAGE = "nextbest/v1"
DEFAULT_OUT = ROOT / "nextbest" / "v1"


def generate(out: Path) -> list[Path]:
    """Generate all modules into `out` (created if missing); return the files written."""
    protos = sorted((PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PROTO_PACKAGE).iterdir()):
            text = src.read_text()
            if src.name.endswith("_grpc.py") and "class " not in text:
                continue  # a proto file without services
            dst = out / src.name
            dst.write_text(text)
            written.append(dst)
        init = out / "__init__.py"
        init.write_text('"""Generated from proto/nextbest/v1 by tools/gen_proto.py. Do not edit."""\n')
        written.append(init)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

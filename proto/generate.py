"""Generate the Python stubs for proto/lumenal/v1 into services/v1 (package lumenal.v1).

One command: ``python proto/generate.py`` (or ``make protos``). The test
suite regenerates into a temporary folder and fails when the committed
stubs differ, so a proto change without regenerating cannot land.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "services" / "v1"
HEADER = '"""Generated from proto/lumenal/v1 by proto/generate.py. Do not edit."""\n'


def generate(out_dir: Path = OUT_DIR) -> list[Path]:
    """Compile every .proto; return the files written to ``out_dir``."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "lumenal" / "v1").glob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*_pb2*.py*"):
            old.unlink()
        (out_dir / "__init__.py").write_text(HEADER)
        written = []
        for f in sorted((Path(tmp) / "lumenal" / "v1").iterdir()):
            shutil.copy(f, out_dir / f.name)
            written.append(out_dir / f.name)
    return written


if __name__ == "__main__":
    files = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)
    print(f"wrote {len(files)} files to {files[0].parent}")

"""Regenerate the committed gRPC/protobuf stubs in zoo_node/proto/ from protos/zoo/node/v1/*.proto.

    python scripts/gen_protos.py            # rewrite zoo_node/proto/
    python scripts/gen_protos.py --out DIR  # write elsewhere (tests/control/test_protos.py diffs the two)

protoc names the generated imports after the proto package (`from zoo.node.v1 import worker_pb2`), which is not an
importable package once zoo-node is installed; the files are therefore flattened into `zoo_node.proto` and those
imports rewritten to `from zoo_node.proto import ...`. The descriptors keep their full names
(`zoo/node/v1/worker.proto`), so they cannot collide with other libraries' protos in the descriptor pool.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "zoo" / "node" / "v1"
DEFAULT_OUT = ROOT / "zoo_node" / "proto"
_IMPORT = re.compile(r"^from zoo\.node\.v1 import ", re.MULTILINE)
_INIT = '"""Generated protobuf and gRPC stubs of protos/zoo/node/v1 (scripts/gen_protos.py); do not edit."""\n'


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpc_tools) on every proto and write the flattened stubs into `out_dir`; returns the files."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for generated in sorted((Path(tmp) / "zoo" / "node" / "v1").iterdir()):
            text = _IMPORT.sub("from zoo_node.proto import ", generated.read_text())
            target = out_dir / generated.name
            target.write_text(text)
            written.append(target)
    init = out_dir / "__init__.py"
    init.write_text(_INIT)
    written.append(init)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: zoo_node/proto)")
    args = parser.parse_args(argv)
    if args.out == DEFAULT_OUT:
        # Stale stubs of a removed proto must not linger.
        for old in DEFAULT_OUT.glob("*_pb2*.py*"):
            old.unlink()
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out == DEFAULT_OUT else path)
    shutil.rmtree(args.out / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

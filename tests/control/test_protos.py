"""The committed stubs in zoo_node/proto are exactly what scripts/gen_protos.py generates from protos/."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    generated = _load_generator().generate(tmp_path / "proto")
    committed = REPO / "zoo_node" / "proto"
    names = sorted(p.name for p in generated)
    assert names == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi")), (
        "stubs added or removed: run python scripts/gen_protos.py"
    )
    stale = [p.name for p in generated if p.read_text() != (committed / p.name).read_text()]
    assert stale == [], f"stale stubs {stale}: run python scripts/gen_protos.py"


def test_stubs_import_from_outside_the_repo(tmp_path: Path) -> None:
    """The rewritten imports work from the installed package, with libp2p's protos in the same process."""
    code = (
        "import libp2p.pubsub.pubsub\n"
        "from zoo_node.proto import gossip_pb2, node_pb2, node_pb2_grpc, worker_pb2_grpc\n"
        "print(gossip_pb2.GossipEnvelope.DESCRIPTOR.file.name, node_pb2_grpc.NodeServiceStub.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["zoo/node/v1/gossip.proto", "NodeServiceStub"]

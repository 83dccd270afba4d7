"""The layering rules of DESIGN.md, checked by importing every module of a package in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package -> top-level modules that must not be loaded by importing it (or any module inside it).
RULES = {
    "zoo_node.control": ("torch", "hivemind"),
    "zoo_node.chain": ("torch", "hivemind"),
    "zoo_node.coordinator": ("torch", "hivemind"),
    "zoo_node.worker": ("libp2p",),
    "zoo_node.model": ("libp2p", "hivemind", "grpc", "web3"),
}

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
modules = [sys.argv[1]]
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue  # entry points run code on import
    importlib.import_module(info.name)
    modules.append(info.name)
print(json.dumps({"modules": modules, "loaded": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def forbidden_imports(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """Import `package` and all its submodules in a fresh interpreter; return the forbidden roots that got loaded."""
    proc = subprocess.run([sys.executable, "-c", PROBE, package], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1])["loaded"])
    return sorted(loaded & set(forbidden))


@pytest.mark.parametrize("package", sorted(RULES))
def test_layering_rule_holds(package: str) -> None:
    assert forbidden_imports(package, RULES[package]) == [], f"{package} must not import {RULES[package]}"


def test_the_check_catches_a_bad_import() -> None:
    """Plant a module that imports torch inside zoo_node/control and show that the check reports it."""
    planted = REPO / "zoo_node" / "control" / f"_planted_{uuid.uuid4().hex[:8]}.py"
    planted.write_text("import torch  # deliberately breaks the layering rule\n")
    try:
        assert forbidden_imports("zoo_node.control", RULES["zoo_node.control"]) == ["torch"]
    finally:
        planted.unlink()
    assert forbidden_imports("zoo_node.control", RULES["zoo_node.control"]) == []

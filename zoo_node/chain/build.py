"""Compile `contracts_abi/src/*.sol` offline with the npm solc (solc-js) into `contracts_abi/<Name>.json`.

The standard-JSON input carries every source, OpenZeppelin's included (resolved here from
`node_modules/@openzeppelin/contracts`), so the compiler needs no import callback and the output depends only on
the sources and the pinned settings below. The metadata hash is left out of the bytecode (`bytecodeHash: none`),
so the artifacts are byte-identical on every machine; a test rebuilds them and compares with what is committed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_node.chain.errors import ChainError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts_abi"
SOURCES_DIR = CONTRACTS_DIR / "src"
NODE_MODULES = REPO_ROOT / "node_modules"
SOLCJS = NODE_MODULES / ".bin" / "solcjs"
CONTRACT_NAMES = ("NodeRegistry", "RunRegistry", "RewardsDistributor")

SOLC_VERSION = "0.8.37"
# Pinned so that a rebuild anywhere gives the same bytes.
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 1000},
    "evmVersion": "cancun",
    "viaIR": False,
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

_IMPORT = re.compile(r'^\s*import\s+(?:[^"\';]*?\s+from\s+)?["\']([^"\']+)["\']', re.MULTILINE)


@dataclass(frozen=True)
class BuildResult:
    artifacts: dict[str, dict[str, Any]]  # contract name -> artifact

    def texts(self) -> dict[str, str]:
        """File name -> the exact text written to `contracts_abi/`."""
        return {
            f"{name}.json": json.dumps(art, indent=2, sort_keys=True) + "\n" for name, art in self.artifacts.items()
        }


def _read_unit(unit: str) -> str:
    path = CONTRACTS_DIR / unit if unit.startswith("src/") else NODE_MODULES / unit
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ChainError(
            f"{path}: Solidity import not found (run scripts/setup.sh to install the npm packages)"
        ) from None


def collect_sources() -> dict[str, str]:
    """Every source unit the contracts need, keyed by unit name (`src/X.sol`, `@openzeppelin/contracts/...`)."""
    pending = [f"src/{name}.sol" for name in CONTRACT_NAMES]
    sources: dict[str, str] = {}
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        text = _read_unit(unit)
        sources[unit] = text
        for target in _IMPORT.findall(text):
            if target.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(unit), target))
            pending.append(target)
    return dict(sorted(sources.items()))


def openzeppelin_version() -> str:
    return json.loads((NODE_MODULES / "@openzeppelin/contracts/package.json").read_text())["version"]


def compile_contracts() -> BuildResult:
    """Run solc-js on the sources; `ChainError` with the compiler's messages if it fails."""
    sources = collect_sources()
    standard_input = {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": SETTINGS,
    }
    if not SOLCJS.exists():
        raise ChainError(f"{SOLCJS}: solc-js not installed (run scripts/setup.sh)")
    version = subprocess.run([str(SOLCJS), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if not version.startswith(SOLC_VERSION + "+"):
        raise ChainError(f"solc-js is {version}, the contracts are pinned to {SOLC_VERSION} (run scripts/setup.sh)")
    # solc-js reads stdin with readFileSync(0), which fails with EAGAIN on a pipe, and exits before a large
    # output written to a pipe is flushed: give it regular files on both ends.
    with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as stdout:
        json.dump(standard_input, stdin)
        stdin.seek(0)
        proc = subprocess.run(
            [str(SOLCJS), "--standard-json"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            cwd=REPO_ROOT,
        )
        stdout.seek(0)
        out_text = stdout.read()
    try:
        output = json.loads(out_text[out_text.index("{") :])
    except ValueError:
        raise ChainError(f"solc-js gave no JSON (exit {proc.returncode}): {proc.stderr.strip()[:500]}") from None
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ChainError("solc: " + "; ".join(e.get("formattedMessage", e.get("message", "")).strip() for e in errors))
    artifacts = {}
    for name in CONTRACT_NAMES:
        unit = f"src/{name}.sol"
        compiled = output["contracts"][unit][name]
        artifacts[name] = {
            "contractName": name,
            "sourceName": unit,
            "sourceHash": "sha256:" + hashlib.sha256(sources[unit].encode()).hexdigest(),
            "sourcesHash": "sha256:" + hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest(),
            "compiler": {"name": "solc-js", "version": version, "settings": _recorded_settings()},
            "openzeppelin": openzeppelin_version(),
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
        }
    return BuildResult(artifacts)


def _recorded_settings() -> dict[str, Any]:
    return {k: v for k, v in SETTINGS.items() if k != "outputSelection"}


def write_artifacts(result: BuildResult, out_dir: Path = CONTRACTS_DIR) -> list[Path]:
    written = []
    for file_name, text in result.texts().items():
        path = out_dir / file_name
        path.write_text(text)
        written.append(path)
    return written

"""The compiled contracts (`contracts_abi/<Name>.json`): ABI and bytecode, read once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from zoo_node.chain.build import CONTRACT_NAMES, CONTRACTS_DIR
from zoo_node.chain.errors import ChainError


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    compiler_version: str


@cache
def load_artifact(name: str) -> Artifact:
    """The committed artifact of contract `name`; `ChainError` if it is missing or damaged."""
    if name not in CONTRACT_NAMES:
        raise ChainError(f"unknown contract {name!r} (known: {', '.join(CONTRACT_NAMES)})")
    path = CONTRACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
        return Artifact(name, data["abi"], data["bytecode"], data["compiler"]["version"])
    except FileNotFoundError:
        raise ChainError(f"{path}: contract artifact missing (run python scripts/build_contracts.py)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ChainError(f"{path}: damaged contract artifact ({exc})") from None


def all_abis() -> list[dict[str, Any]]:
    """The entries of every contract's ABI, for decoding errors and events whatever contract raised them."""
    return [entry for name in CONTRACT_NAMES for entry in load_artifact(name).abi]

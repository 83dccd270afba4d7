#!/usr/bin/env python3
"""Rebuild contracts_abi/<Name>.json from contracts_abi/src with the pinned npm solc (offline).

Usage: python scripts/build_contracts.py [--check]   (--check: exit 1 if the committed artifacts differ)
"""

from __future__ import annotations

import sys

from zoo_node.chain.build import CONTRACTS_DIR, compile_contracts, write_artifacts


def main(argv: list[str]) -> int:
    result = compile_contracts()
    if "--check" in argv:
        stale = [name for name, text in result.texts().items() if (CONTRACTS_DIR / name).read_text() != text]
        for name in stale:
            print(f"contracts_abi/{name} is out of date: run python scripts/build_contracts.py", file=sys.stderr)
        return 1 if stale else 0
    for path in write_artifacts(result):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The committed artifacts are exactly what the pinned compiler makes of the committed sources."""

from __future__ import annotations

import json

from zoo_node.chain.build import CONTRACT_NAMES, CONTRACTS_DIR, SOLC_VERSION, compile_contracts


def test_rebuilt_artifacts_match_the_committed_ones():
    rebuilt = compile_contracts().texts()
    assert sorted(rebuilt) == sorted(f"{name}.json" for name in CONTRACT_NAMES)
    for file_name, text in rebuilt.items():
        committed = (CONTRACTS_DIR / file_name).read_text()
        assert committed == text, f"contracts_abi/{file_name} is stale: run python scripts/build_contracts.py"


def test_artifacts_record_compiler_and_source_hash():
    for name in CONTRACT_NAMES:
        art = json.loads((CONTRACTS_DIR / f"{name}.json").read_text())
        assert art["compiler"]["version"].startswith(SOLC_VERSION + "+")
        assert art["compiler"]["settings"]["optimizer"] == {"enabled": True, "runs": 1000}
        assert art["sourceHash"].startswith("sha256:") and len(art["sourceHash"]) == 7 + 64
        assert art["bytecode"].startswith("0x60") and len(art["abi"]) > 5

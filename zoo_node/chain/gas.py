"""Gas accounting helpers: split a transaction's gas into its calldata part and the rest."""

from __future__ import annotations

from typing import Any

TX_BASE_GAS = 21_000


def calldata_gas(data: bytes) -> int:
    """Intrinsic gas of calldata before EIP-7623's floor: 4 per zero byte, 16 per other byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


def execution_gas(receipt: Any, tx: Any) -> int:
    """Gas used beyond the base 21,000 and the calldata: what the contract's code and storage cost."""
    data = bytes(tx["input"])
    return receipt["gasUsed"] - TX_BASE_GAS - calldata_gas(data)

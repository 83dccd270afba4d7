"""One error type for reverts, whatever the backend: anvil (web3's ContractLogicError / ContractCustomError) or
in-process py-evm (eth_tester's TransactionFailed). Custom errors are decoded with the contracts' ABIs."""

from __future__ import annotations

import ast
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3

from zoo_node.chain.artifacts import all_abis
from zoo_node.chain.errors import ContractRevert

_ERROR_STRING = "0x08c379a0"  # Error(string)
_PANIC = "0x4e487b71"  # Panic(uint256)
_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


def _type_string(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + param["type"][5:]
    return param["type"]


@cache
def _custom_errors() -> dict[str, tuple[str, list[str], list[str]]]:
    """selector -> (name, argument names, argument types), from every contract's ABI."""
    errors = {}
    for entry in all_abis():
        if entry.get("type") != "error":
            continue
        types = [_type_string(p) for p in entry["inputs"]]
        selector = Web3.to_hex(function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})"))
        errors[selector] = (entry["name"], [p["name"] for p in entry["inputs"]], types)
    return errors


def _show(value: Any, typ: str) -> str:
    if typ == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return Web3.to_hex(value)
    if isinstance(value, str):
        return repr(value)
    return str(value)


def decode_revert(data: str | bytes | None, fallback: str = "") -> ContractRevert:
    """Turn revert data (0x-hex) into a `ContractRevert` with a readable reason."""
    if isinstance(data, bytes):
        data = Web3.to_hex(data)
    data = (data or "").lower()
    if data in ("", "0x"):
        return ContractRevert(fallback or "reverted without a reason", data=data)
    selector, payload = data[:10], bytes.fromhex(data[10:])
    try:
        if selector == _ERROR_STRING:
            (message,) = decode(["string"], payload)
            return ContractRevert(message, error="Error", args={"message": message}, data=data)
        if selector == _PANIC:
            (code,) = decode(["uint256"], payload)
            return ContractRevert(
                f"Panic(0x{code:02x}: {_PANIC_CODES.get(code, 'unknown panic')})",
                error="Panic",
                args={"code": code},
                data=data,
            )
        known = _custom_errors().get(selector)
        if known:
            name, names, types = known
            values = [
                to_checksum_address(v) if t == "address" else v
                for v, t in zip(decode(types, payload), types, strict=True)
            ]
            args = dict(zip(names, values, strict=True))
            shown = ", ".join(f"{n}={_show(v, t)}" for n, v, t in zip(names, values, types, strict=True))
            return ContractRevert(f"{name}({shown})", error=name, args=args, data=data)
    except Exception:  # malformed payload: fall through and show the raw data
        pass
    return ContractRevert(f"reverted with unknown error data {data}", data=data)


def revert_from_exception(exc: BaseException) -> ContractRevert | None:
    """The `ContractRevert` that a web3 or eth_tester exception stands for, or None if it is not a revert."""
    from web3.exceptions import ContractLogicError

    if isinstance(exc, ContractRevert):
        return exc
    if isinstance(exc, ContractLogicError):
        data = exc.data if isinstance(exc.data, str) else None
        message = str(exc.message or "").removeprefix("execution reverted: ").removeprefix("execution reverted")
        return decode_revert(data, message.strip(": ") or "reverted")
    try:
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # eth-tester is a dev dependency
        return None
    if isinstance(exc, TransactionFailed):
        return decode_revert(_tester_revert_data(exc.args[0] if exc.args else None), "reverted")
    return None


def _tester_revert_data(raw: object) -> bytes | str | None:
    """eth-tester puts the revert data in its message as a bytes literal: `execution reverted: b'...'`."""
    if isinstance(raw, bytes):
        return raw
    if not isinstance(raw, str):
        return None
    text = raw.removeprefix("execution reverted: ").strip()
    if text.startswith("0x"):
        return text
    if text[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None

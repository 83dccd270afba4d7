"""Errors of the chain area. All are `ZooError`s: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from typing import Any

from zoo_node.errors import ZooError


class ChainError(ZooError):
    """Something about the chain went wrong: a bad deployment file, a missing contract, a failed build."""


class RpcUnavailable(ChainError):
    """The JSON-RPC endpoint could not be reached after the bounded retries."""


class TransactionTimeout(ChainError):
    """A sent transaction got no receipt within the timeout (it may still be mined later)."""


class ContractRevert(ChainError):
    """A contract call or transaction reverted. The same type whether the backend is anvil or in-process py-evm.

    `error` is the custom error's name (`StakeTooLow`), `Error` for `require(..., "reason")`, `Panic` for a panic,
    or `""` when the revert carried no data; `args` are its decoded arguments; `reason` is the one-line text.
    """

    def __init__(self, reason: str, *, error: str = "", args: dict[str, Any] | None = None, data: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.args_ = dict(args or {})
        self.data = data

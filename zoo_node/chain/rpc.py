"""Reaching the JSON-RPC endpoint: a Web3 without web3's own retries, and one bounded retry loop of ours.

Only connection failures (refused, reset, timed out, a 502/503/504 from a proxy) are retried, with exponential
backoff; a revert or any other answer of the node is never retried. Reverts of reads are raised as
`ContractRevert` whatever the backend.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from web3 import Web3
from web3.exceptions import BlockNotFound, ProviderConnectionError, TransactionNotFound, Web3RPCError

from zoo_node.chain.errors import ChainError, RpcUnavailable
from zoo_node.chain.revert import revert_from_exception

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE_HTTP = {502, 503, 504}


def is_connection_error(exc: BaseException) -> bool:
    """True for failures to reach the endpoint (worth a retry), False for anything the node answered."""
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code in _RETRYABLE_HTTP
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | ProviderConnectionError | ConnectionError | TimeoutError
    )


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt; the delay doubles from `backoff_s` up to `backoff_max_s`."""

    max_retries: int = 5
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0

    def delays(self) -> list[float]:
        return [min(self.backoff_s * 2**i, self.backoff_max_s) for i in range(self.max_retries)]


def _rpc_message(exc: Web3RPCError) -> str:
    error = exc.rpc_response.get("error") if isinstance(exc.rpc_response, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return short_error(exc)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def short_error(exc: BaseException) -> str:
    """One short phrase for a connection failure ("Connection refused", "Read timed out", ...)."""
    text = str(exc)
    match = _ERRNO.search(text)
    if match:
        return match.group(1).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "connection closed without an answer"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:160]


class Rpc:
    """A Web3 and its endpoint, with `call(fn)`: bounded retries on connection errors, reverts mapped."""

    def __init__(
        self, w3: Web3, url: str, policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep
    ):
        self.w3 = w3
        self.url = url
        self.policy = policy or RetryPolicy()
        self._sleep = sleep

    def call(self, fn: Callable[[], T], what: str) -> T:
        """Run `fn` (which talks to the RPC); retry connection failures; raise `RpcUnavailable` when they last."""
        delays = self.policy.delays()
        for attempt in range(len(delays) + 1):
            try:
                return fn()
            except Exception as exc:
                revert = revert_from_exception(exc)
                if revert is not None:
                    raise revert from None
                if isinstance(exc, TransactionNotFound | BlockNotFound):
                    raise  # an answer the caller handles
                if isinstance(exc, Web3RPCError):  # the node answered with an error: no retry, one clear line
                    raise ChainError(f"{self.url}: {what}: {_rpc_message(exc)}") from None
                if not is_connection_error(exc):
                    raise
                if attempt == len(delays):
                    raise RpcUnavailable(
                        f"{self.url}: {what}: the RPC is unreachable after {attempt + 1} attempts ({short_error(exc)})"
                    ) from None
                log.warning("chain: %s: %s; retry %d/%d", what, short_error(exc), attempt + 1, len(delays))
                self._sleep(delays[attempt])
        raise AssertionError("unreachable")


def connect_http(url: str, *, timeout_s: float = 10.0) -> Web3:
    """A Web3 over HTTP with a request timeout, web3's own retries off (ours are bounded and revert-aware), and the
    proof-of-authority middleware (so chains with long extraData, such as Clique testnets, decode)."""
    from web3 import HTTPProvider
    from web3.middleware import ExtraDataToPOAMiddleware

    provider = HTTPProvider(url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
    w3 = Web3(provider)
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3

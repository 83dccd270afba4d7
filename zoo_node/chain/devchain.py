"""The dev chain: anvil on a free 127.0.0.1 port with the contracts deployed and funded dev accounts.

    with start_devchain(accounts=5, deployment_file=path) as chain:
        client = chain.client(chain.accounts[1])

anvil is `node_modules/.bin/anvil` (installed by scripts/setup.sh from npm). It listens on port 0 and we read the
port it got from its output, so there is no race for a port. It is stopped on `stop()`, on leaving the `with`,
when the object is collected, at interpreter exit, and (Linux, when started from the main thread) when the process
that started it dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_node.chain.build import NODE_MODULES
from zoo_node.chain.client import ChainClient
from zoo_node.chain.deploy import deploy_contracts
from zoo_node.chain.deployment import Deployment
from zoo_node.chain.errors import ChainError
from zoo_node.chain.rpc import RetryPolicy, Rpc, connect_http

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

ANVIL = NODE_MODULES / ".bin" / "anvil"
DEV_CHAIN_ID = 31337
DEV_MIN_STAKE_WEI = 10**18
DEV_UNBONDING_PERIOD_S = 60
# On a local chain an unreachable RPC will not come back by waiting long: fail fast.
DEV_RETRY = RetryPolicy(max_retries=3, backoff_s=0.05, backoff_max_s=0.5)
_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_process(process: subprocess.Popen, workdir: str) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


class DevChain:
    """A running anvil with the contracts deployed. Use `start_devchain()` to make one."""

    def __init__(self, process: subprocess.Popen, workdir: str, rpc_url: str, accounts: list[LocalAccount]) -> None:
        self.process = process
        self.rpc_url = rpc_url
        self.accounts = accounts
        self.rpc = Rpc(connect_http(rpc_url, timeout_s=10.0), rpc_url, DEV_RETRY)
        self.deployment: Deployment | None = None
        self.deployment_file: Path | None = None
        self._workdir = workdir
        self._finalizer = weakref.finalize(self, _stop_process, process, workdir)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.rpc_url.rsplit(":", 1)[1])

    @property
    def deployer(self) -> LocalAccount:
        return self.accounts[0]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop anvil (SIGTERM, then SIGKILL after 5 s) and remove its scratch folder; idempotent."""
        self._finalizer()

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, account: LocalAccount | None = None, *, policy: RetryPolicy | None = None) -> ChainClient:
        """A `ChainClient` of this chain that sends as `account` (None: read-only)."""
        if self.deployment is None:
            raise ChainError("the dev chain has no deployment yet")
        return ChainClient.connect(self.rpc_url, self.deployment, account, policy=policy or DEV_RETRY, check=False)

    # ---- anvil's dev methods
    def request(self, method: str, params: list[Any]) -> Any:
        response = self.rpc.call(lambda: self.rpc.w3.provider.make_request(method, params), method)
        if "error" in response:
            raise ChainError(f"{method}: {response['error']}")
        return response["result"]

    def fund(self, address: str, amount_wei: int) -> None:
        """Set `address`'s balance to `amount_wei` (no transaction)."""
        self.request("anvil_setBalance", [address, hex(amount_wei)])

    def snapshot(self) -> str:
        return self.request("evm_snapshot", [])

    def revert(self, snapshot_id: str) -> None:
        if not self.request("evm_revert", [snapshot_id]):
            raise ChainError(f"evm_revert({snapshot_id}) failed")

    def increase_time(self, seconds: int) -> None:
        """Move the chain's clock forward and mine a block carrying the new time."""
        self.request("evm_increaseTime", [int(seconds)])
        self.mine()

    def mine(self, blocks: int = 1) -> None:
        self.request("anvil_mine", [hex(blocks)])

    def set_automine(self, enabled: bool) -> None:
        self.request("evm_setAutomine", [enabled])


def _wait_listening(process: subprocess.Popen, log_path: Path, timeout_s: float) -> tuple[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        match = _LISTENING.search(text)
        if match:
            return match.group(1), int(match.group(2))
        if process.poll() is not None:
            tail = " | ".join(text.strip().splitlines()[-5:])
            raise ChainError(f"anvil exited with code {process.returncode} before listening: {tail or 'no output'}")
        if time.monotonic() > deadline:
            raise ChainError(f"anvil did not listen within {timeout_s:g} s")
        time.sleep(0.01)


def launch_anvil(
    *,
    accounts: int = 10,
    balance_eth: int = 10_000,
    chain_id: int = DEV_CHAIN_ID,
    host: str = "127.0.0.1",
    port: int = 0,
    block_time_s: float | None = None,
    extra_args: list[str] | None = None,
    start_timeout_s: float = 15.0,
) -> DevChain:
    """Start anvil (no contracts yet) and wait until it answers JSON-RPC."""
    from eth_account import Account

    if not ANVIL.exists():
        raise ChainError(f"{ANVIL}: anvil is not installed (run scripts/setup.sh)")
    workdir = tempfile.mkdtemp(prefix="zoo-anvil-")
    log_path = Path(workdir) / "anvil.log"
    config_out = Path(workdir) / "anvil.json"
    args = [
        str(ANVIL),
        "--host", host,
        "--port", str(port),
        "--accounts", str(accounts),
        "--balance", str(balance_eth),
        "--chain-id", str(chain_id),
        "--config-out", str(config_out),
    ]  # fmt: skip
    if block_time_s is not None:
        args += ["--block-time", f"{block_time_s:g}"]
    args += extra_args or []
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only ask for it from the main thread.
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )
    try:
        bound_host, bound_port = _wait_listening(process, log_path, start_timeout_s)
        keys = json.loads(config_out.read_text())["private_keys"]
        chain = DevChain(process, workdir, f"http://{bound_host}:{bound_port}", [Account.from_key(k) for k in keys])
        _wait_answering(chain, start_timeout_s)
    except BaseException:
        _stop_process(process, workdir)
        raise
    log.info("anvil (pid %d) listening on %s", process.pid, chain.rpc_url)
    return chain


def _wait_answering(chain: DevChain, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            chain.rpc.w3.eth.chain_id  # noqa: B018
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise ChainError(f"anvil at {chain.rpc_url} does not answer: {exc}") from None
            time.sleep(0.02)


def start_devchain(
    *,
    accounts: int = 10,
    balance_eth: int = 10_000,
    fund: dict[str, int] | None = None,
    min_stake_wei: int = DEV_MIN_STAKE_WEI,
    unbonding_period_s: int = DEV_UNBONDING_PERIOD_S,
    deployment_file: Path | None = None,
    chain_id: int = DEV_CHAIN_ID,
    port: int = 0,
    block_time_s: float | None = None,
) -> DevChain:
    """Start anvil, deploy the contracts from `accounts[0]`, fund `fund` (address -> wei) and write the deployment.

    `accounts` dev accounts (anvil's mnemonic) hold `balance_eth` each; their keys are in `chain.accounts`.
    """
    chain = launch_anvil(accounts=accounts, balance_eth=balance_eth, chain_id=chain_id, port=port,
                         block_time_s=block_time_s)  # fmt: skip
    try:
        chain.deployment = deploy_contracts(
            chain.rpc, chain.deployer, min_stake_wei=min_stake_wei, unbonding_period_s=unbonding_period_s
        )
        for address, amount in (fund or {}).items():
            chain.fund(address, amount)
        if deployment_file is not None:
            chain.deployment_file = chain.deployment.write(Path(deployment_file))
    except BaseException:
        chain.stop()
        raise
    return chain

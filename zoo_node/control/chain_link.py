"""The control plane's adapter over the chain clients (zoo_node.chain): registration, runs, registered nodes.

All methods block (JSON-RPC over HTTP); the supervisor calls them in a worker thread.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_node.control.registry import RegisteredNode
from zoo_node.errors import ZooError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from zoo_node.chain.client import ChainClient
    from zoo_node.chain.node_registry import Hardware, NodeInfo
    from zoo_node.config import NodeConfig

logger = logging.getLogger(__name__)


class JoinError(ZooError):
    """The node cannot join: not registered, registered to another operator, no run to join, ..."""


def parse_stake(text: str) -> int:
    """A stake in coins ("1.5") as wei; JoinError naming the value if it is not a positive amount."""
    try:
        coins = Decimal(text)
    except InvalidOperation:
        raise JoinError(f"--stake {text!r}: not a number of coins") from None
    if not coins.is_finite() or coins <= 0:
        raise JoinError(f"--stake {text!r}: must be a positive number of coins")
    wei = coins * 10**18
    if wei != wei.to_integral_value():
        raise JoinError(f"--stake {text!r}: more than 18 decimals")
    return int(wei)


def detect_hardware() -> Hardware:
    """What the node registers: its GPUs from nvidia-smi (model, count, MiB each), else "cpu", 0, 0."""
    from zoo_node.chain.node_registry import Hardware

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            rows = [line.rsplit(",", 1) for line in out.strip().splitlines() if "," in line]
            if rows:
                return Hardware(rows[0][0].strip()[:128], len(rows), int(float(rows[0][1])))
        except (subprocess.SubprocessError, OSError, ValueError):
            logger.warning("nvidia-smi did not answer; registering as a CPU node")
    return Hardware("cpu", 0, 0)


@dataclass
class ChainDirectory:
    """`NodeDirectory` over the NodeRegistry and RunRegistry, plus the transactions `join` may need."""

    client: ChainClient

    @classmethod
    def from_config(cls, config: NodeConfig, home: Path, account: LocalAccount | None = None) -> ChainDirectory:
        from zoo_node.chain.client import ChainClient

        return cls(ChainClient.from_config(config, home, account))

    def with_account(self, account: LocalAccount, receipt_timeout_s: float = 120.0) -> ChainDirectory:
        """The same connection, able to send transactions as `account`."""
        from zoo_node.chain.client import ChainClient

        client = ChainClient(self.client.rpc, self.client.deployment, account, receipt_timeout_s=receipt_timeout_s)
        return ChainDirectory(client)

    # --- NodeDirectory ---------------------------------------------------------------------------------------

    def registered_nodes(self) -> list[RegisteredNode]:
        from zoo_node.chain.errors import ChainError

        nodes = []
        for info in self.client.nodes.active_nodes():
            try:
                addrs = tuple(info.multiaddrs)
            except ChainError as exc:
                logger.debug("node %s publishes unreadable metadata: %s", info.peer_id, exc)
                addrs = ()
            nodes.append(RegisteredNode(peer_id=info.peer_id, operator=info.operator, multiaddrs=addrs))
        return nodes

    def active_run_ids(self) -> list[int]:
        return self.client.runs.active_run_ids()

    def settled_until(self, run_id: int) -> float | None:
        epoch = self.client.rewards.pool(run_id).epoch
        if epoch == 0:
            return None
        run = self.client.runs.get_run(run_id)
        return None if run is None else float(run.epoch_end(epoch))

    def rewards(self, run_id: int, account: str) -> dict[str, Any] | None:
        from zoo_node.coordinator.report import account_rewards

        runs = account_rewards(self.client, account, run_ids=[run_id])
        return runs[0] if runs else None

    # --- join's checks and transactions ----------------------------------------------------------------------

    def own_node(self, peer_id: str) -> NodeInfo | None:
        return self.client.nodes.get_node(peer_id)

    def check_registration(self, peer_id: str, operator: str) -> NodeInfo | None:
        """The node's record if it is active and operated by `operator`; None if not registered (or withdrawn).

        JoinError if it is registered but unusable (exiting, or another operator's).
        """
        from zoo_node.chain.node_registry import NodeStatus

        info = self.own_node(peer_id)
        if info is None or info.status in (NodeStatus.NONE, NodeStatus.WITHDRAWN):
            return None
        if info.operator.lower() != operator.lower():
            raise JoinError(
                f"control PeerID {peer_id} is registered with operator {info.operator}, not this home's {operator}"
            )
        if info.status != NodeStatus.ACTIVE:
            raise JoinError(f"node {peer_id} is {info.status.name.lower()} on chain; it cannot join runs")
        return info

    def pick_run(self, wanted: int | None) -> int:
        """The run to join: `wanted` if it is active, else the only active run; JoinError otherwise."""
        from zoo_node.chain.run_registry import RunStatus

        if wanted is not None:
            run = self.client.runs.get_run(wanted)
            if run is None:
                raise JoinError(f"run {wanted} does not exist on chain")
            if run.status != RunStatus.ACTIVE:
                raise JoinError(f"run {wanted} is {run.status.name.lower()}, not active")
            return wanted
        active = self.active_run_ids()
        if not active:
            raise JoinError("no active run on chain to join (a run owner creates one with `zoo-node run create`)")
        if len(active) > 1:
            listed = ", ".join(str(r) for r in active)
            raise JoinError(f"several runs are active ({listed}); choose one with --run or run_id in config.toml")
        return active[0]

    def register(self, peer_id: str, operator: str, stake_wei: int, multiaddrs: list[str]) -> None:
        from zoo_node.chain.metadata import encode_metadata_uri

        minimum = self.client.nodes.min_stake()
        if stake_wei < minimum:
            raise JoinError(f"--stake is below the registry's minimum of {Decimal(minimum) / 10**18} coins")
        self.client.nodes.register(
            operator=operator,
            peer_id=peer_id,
            hardware=detect_hardware(),
            metadata_uri=encode_metadata_uri(multiaddrs),
            stake=stake_wei,
        )

    def publish_multiaddrs(self, info: NodeInfo, multiaddrs: list[str]) -> bool:
        """Update the node's published multiaddrs if they changed; True if a transaction was sent."""
        from zoo_node.chain.errors import ChainError
        from zoo_node.chain.metadata import encode_metadata_uri

        try:
            current = info.multiaddrs
        except ChainError:
            current = []
        if sorted(current) == sorted(multiaddrs):
            return False
        self.client.nodes.update_metadata(info.node_id, encode_metadata_uri(multiaddrs))
        return True

    def join_run(self, info: NodeInfo, run_id: int) -> bool:
        """Record on chain that the node takes part in `run_id`; True if a transaction was sent."""
        if self.client.nodes.joined_run(info.node_id, run_id):
            return False
        self.client.nodes.join_run(info.node_id, run_id)
        return True

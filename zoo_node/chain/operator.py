"""What an operator does on chain, as library functions (the CLI and `zoo-node join --register` call these):
register the node, leave, withdraw the stake, see and claim rewards."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from web3 import Web3

from zoo_node.chain.client import ChainClient
from zoo_node.chain.errors import ChainError
from zoo_node.chain.metadata import encode_metadata_uri
from zoo_node.chain.node_registry import Hardware, NodeInfo, NodeStatus, node_id_of
from zoo_node.chain.proofs import load_claims

WEI_PER_COIN = 10**18


def parse_coins(text: str, what: str = "amount") -> int:
    """ "1.5" (coins) -> wei; `ChainError` naming `what` if it is not a non-negative amount with at most 18 decimals."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ChainError(f"{what}: {text!r} is not a number of coins (e.g. 1.5)") from None
    wei = value * WEI_PER_COIN
    if not value.is_finite() or value < 0 or wei != wei.to_integral_value():
        raise ChainError(f"{what}: {text!r} must be a non-negative number of coins with at most 18 decimals")
    return int(wei)


def format_coins(wei: int) -> str:
    """wei -> "1.5" (coins), exact."""
    text = format(Decimal(wei) / WEI_PER_COIN, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def detect_hardware() -> Hardware:
    """The GPUs `nvidia-smi` reports (model of the first, count, memory per GPU in MiB); "cpu", 0, 0 without one."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout  # fmt: skip
            rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]
            if rows:
                return Hardware(rows[0][0][:128], len(rows), int(float(rows[0][1])))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return Hardware("cpu", 0, 0)


@dataclass(frozen=True)
class Registration:
    node_id: bytes
    tx_hash: str
    stake: int
    node: NodeInfo

    def as_dict(self) -> dict[str, Any]:
        return {"tx_hash": self.tx_hash, **self.node.as_dict()}


def register_node(
    owner_client: ChainClient,
    *,
    operator: str,
    peer_id: str,
    stake: int | None = None,
    hardware: Hardware | None = None,
    multiaddrs: list[str] | None = None,
) -> Registration:
    """Register the node of `peer_id`, owned by `owner_client`'s account; stake defaults to the minimum.

    Checks the balance first so that the error says how much is missing; reverts (too little stake, already
    registered, owned by someone else) arrive as `ContractRevert` with the reason.
    """
    if owner_client.account is None:
        raise ChainError("register: no owner account to send with")
    min_stake = owner_client.nodes.min_stake()
    stake = min_stake if stake is None else stake
    owner = owner_client.account.address
    balance = owner_client.balance(owner)
    if balance < stake:
        raise ChainError(
            f"register: {owner} holds {format_coins(balance)} coins, the stake is {format_coins(stake)} (plus gas)"
        )
    node_id, receipt = owner_client.nodes.register(
        operator=operator,
        peer_id=peer_id,
        hardware=hardware or detect_hardware(),
        metadata_uri=encode_metadata_uri(multiaddrs or []),
        stake=stake,
    )
    node = owner_client.nodes.get_node(node_id)
    assert node is not None
    return Registration(node_id, Web3.to_hex(receipt["transactionHash"]), stake, node)


def registered_node(client: ChainClient, peer_id: str) -> NodeInfo:
    """The node of `peer_id`, or `ChainError` saying it is not registered."""
    node = client.nodes.get_node(peer_id)
    if node is None:
        raise ChainError(f"the node {peer_id} is not registered (run `zoo-node register`)")
    return node


def deregister_node(client: ChainClient, peer_id: str) -> NodeInfo:
    """Start the exit of `peer_id`'s node (owner or operator); returns the node, now exiting."""
    node = registered_node(client, peer_id)
    if node.status is not NodeStatus.ACTIVE:
        raise ChainError(f"the node {peer_id} is {node.status.name.lower()}, not active: nothing to deregister")
    client.nodes.request_exit(node.node_id)
    return registered_node(client, peer_id)


def withdraw_stake(owner_client: ChainClient, peer_id: str) -> int:
    """Withdraw the stake of `peer_id`'s node after unbonding (owner only); returns the wei paid."""
    registered_node(owner_client, peer_id)
    receipt = owner_client.nodes.withdraw(node_id_of(peer_id))
    events = owner_client.nodes.events_in_receipt("StakeWithdrawn", receipt)
    return events[0]["amount"] if events else 0


@dataclass
class RunReward:
    """An account's reward in one run: the latest posted cumulative amount, what it claimed, what is left."""

    run_id: int
    epoch: int = 0
    cumulative: int = 0
    claimed: int = 0
    proof: list[bytes] = field(default_factory=list, repr=False)
    claims_uri: str = ""
    problem: str = ""  # why the cumulative amount is unknown (claims file unreachable, not in it, ...)

    @property
    def claimable(self) -> int:
        return max(self.cumulative - self.claimed, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "epoch": self.epoch,
            "cumulative_wei": str(self.cumulative),
            "claimed_wei": str(self.claimed),
            "claimable_wei": str(self.claimable),
            "claims_uri": self.claims_uri,
            "problem": self.problem,
        }


def reward_status(
    client: ChainClient, account: str, *, run_ids: list[int] | None = None, claims_location: str | None = None
) -> list[RunReward]:
    """`account`'s rewards in `run_ids` (default: every run with a posted root). The leaves and proofs come from
    the claims file named by each run's latest `RootPosted` event, or from `claims_location`."""
    explicit = run_ids is not None
    if run_ids is None:
        run_ids = list(range(1, client.runs.run_count() + 1))
    rewards = []
    for run_id in run_ids:
        if client.runs.get_run(run_id) is None:
            raise ChainError(f"run {run_id} does not exist")
        reward = RunReward(run_id, claimed=client.rewards.claimed(run_id, account))
        posted = client.rewards.latest_root(run_id, from_block=client.deployment.block)
        if posted is None:
            if explicit:
                reward.problem = "no root posted yet"
                rewards.append(reward)
            continue
        reward.epoch = posted.epoch
        reward.claims_uri = claims_location or posted.proofs_uri
        try:
            if not reward.claims_uri:
                raise ChainError("the root was posted without a claims file URI")
            claims = load_claims(reward.claims_uri)
            if claims.root != posted.root:
                raise ChainError(f"{reward.claims_uri} is for root {Web3.to_hex(claims.root)}, not the posted one")
            claim = claims.claim_of(account)
            if claim is not None:
                claims.check(account)
                reward.cumulative, reward.proof = claim.amount, claim.proof
            else:
                reward.cumulative = reward.claimed  # not in the tree: nothing (more) for this account
        except ChainError as exc:
            reward.problem = str(exc)
        rewards.append(reward)
    return rewards


def claim_rewards(client: ChainClient, account: str, rewards: list[RunReward]) -> list[tuple[RunReward, int, str]]:
    """Claim every claimable reward for `account` (any sender may submit); returns (reward, paid wei, tx hash)."""
    done = []
    for reward in rewards:
        if reward.claimable == 0 or reward.problem:
            continue
        paid, receipt = client.rewards.claim(reward.run_id, account, reward.cumulative, reward.proof)
        done.append((reward, paid, Web3.to_hex(receipt["transactionHash"])))
    return done

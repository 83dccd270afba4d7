"""Epoch settlement: check the receipts announced during an epoch, credit verified model FLOPs to owners, share the
epoch's reward pro rata, build the cumulative Merkle tree, post its root, and report.

    settlement = settle_epoch(terms, announcements, directory, history=..., previous_cumulative=...)
    publish_epoch(settlement, rewards=chain.rewards, claims_dir=..., ledger=ledger)

Verified FLOPs of a credited receipt = the claimant's witnessed samples x FLOPs per sample of the shard (from the
run spec through `zoo_node.model`; see `load_flops_table`). The receipt's own tokens, FLOPs and seconds are the
node's unwitnessed figures: seconds feed GPU-hours and MFU in the report and bound the peak check, never the credit.

Shares: the epoch's `reward_per_epoch` is split over owners by verified FLOPs with the largest-remainder rule of
`zoo_node.coordinator.sharing`, so the shares add up to the reward to the wei. An epoch without verified work
allocates nothing (that reward stays in the pool, reclaimable by the run's creator when the run closes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_node.coordinator.checks import (
    CreditHistory,
    Reason,
    Refused,
    check_cosignatures,
    check_identity,
    check_not_credited,
    check_peak,
    check_witnesses,
)
from zoo_node.coordinator.nodes import ChainNodeDirectory, NodeDirectory, RegisteredNode, WorkerBindings
from zoo_node.coordinator.sharing import share_pro_rata
from zoo_node.errors import ZooError
from zoo_node.peaks import parse_device_label
from zoo_node.receipts import Receipt, ReceiptError, VerifiedCache

if TYPE_CHECKING:
    from zoo_node.chain.client import ChainClient
    from zoo_node.chain.merkle import RewardTree
    from zoo_node.chain.rewards import RewardsClient
    from zoo_node.coordinator.ledger import SettlementLedger
    from zoo_node.proto import worker_pb2

REPORT_VERSION = 1
ROUNDING_RULE = (
    "largest remainder: floor(reward * flops / total_flops) each, the leftover wei one each to the largest "
    "remainders, ties by lowercase address ascending"
)


class SettlementError(ZooError):
    """An epoch cannot be settled or posted (bad terms, a chain that disagrees with the ledger)."""


@dataclass(frozen=True)
class Announcement:
    """A receipt as the coordinator heard it: who announced it (the gossip's verified origin) and the receipt."""

    announcer: str  # control-plane PeerID of the announcing node
    receipt: Receipt | bytes | worker_pb2.Receipt


@dataclass(frozen=True)
class EpochTerms:
    """What an epoch's settlement needs to know about the run."""

    run_id: int
    epoch: int
    reward_wei: int
    epoch_length_s: float
    flops_per_sample: Mapping[str, int]  # shard -> model FLOPs of one witnessed sample
    min_nodes: int = 2  # distinct registered nodes that must be in a round's group

    def __post_init__(self) -> None:
        if self.epoch < 1:
            raise SettlementError(f"epoch: {self.epoch} (epochs count from 1)")
        if self.reward_wei < 0 or self.epoch_length_s <= 0:
            raise SettlementError(f"reward {self.reward_wei} wei / epoch length {self.epoch_length_s} s is invalid")
        if not self.flops_per_sample or any(v <= 0 for v in self.flops_per_sample.values()):
            raise SettlementError("flops_per_sample: needs a positive FLOPs figure for every shard of the run")
        if self.min_nodes < 1:
            raise SettlementError(f"min_nodes: {self.min_nodes} must be at least 1")


@dataclass(frozen=True)
class Credit:
    announcer: str
    owner: str
    workers: tuple[str, ...]
    shard: str
    round: int
    digest: bytes
    samples: int
    flops: int
    seconds: float
    device: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "announcer": self.announcer,
            "owner": self.owner,
            "workers": list(self.workers),
            "shard": self.shard,
            "round": self.round,
            "digest": self.digest.hex(),
            "samples": self.samples,
            "verified_flops": str(self.flops),
            "seconds": self.seconds,
            "device": self.device,
        }


@dataclass(frozen=True)
class Rejection:
    announcer: str
    reason: Reason
    detail: str
    shard: str | None = None
    round: int | None = None
    digest: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "announcer": self.announcer,
            "shard": self.shard,
            "round": self.round,
            "digest": None if self.digest is None else self.digest.hex(),
            "reason": str(self.reason),
            "detail": self.detail,
        }


@dataclass
class NodeFigures:
    """One node's credited work in the epoch."""

    node: RegisteredNode
    receipts: int = 0
    samples: int = 0
    flops: int = 0
    seconds: float = 0.0  # the node's own seconds of its credited rounds
    measured_peak: float | None = None  # from its receipts' device label, for MFU of a device not in the table

    @property
    def hours_label(self) -> str:
        return "cpu-hours" if self.node.is_cpu else "gpu-hours"

    @property
    def device_hours(self) -> float:
        devices = 1 if self.node.is_cpu else self.node.gpu_count
        return self.seconds * devices / 3600.0

    @property
    def mfu_peak(self) -> float | None:
        """The peak MFU is measured against: the table's, else the worker's calibration capped at the ceiling."""
        if self.node.peak_source == "table":
            return self.node.peak_flops
        if self.measured_peak:
            devices = 1 if self.node.is_cpu else self.node.gpu_count
            return min(self.measured_peak * devices, self.node.peak_flops)
        return None

    @property
    def mfu(self) -> float | None:
        peak = self.mfu_peak
        if peak is None or self.seconds <= 0:
            return None
        return self.flops / (self.seconds * peak)

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.node.owner,
            "hardware": self.node.hardware,
            "peak_flops": self.node.peak_flops,
            "peak_source": self.node.peak_source,
            "receipts": self.receipts,
            "samples": self.samples,
            "verified_flops": str(self.flops),
            "seconds": self.seconds,
            "device_hours": self.device_hours,
            "hours_label": self.hours_label,
            "mfu": self.mfu,
        }


@dataclass(frozen=True)
class EpochSettlement:
    """The outcome of checking an epoch's receipts: credits, refusals, shares and the new cumulative tree."""

    terms: EpochTerms
    credits: tuple[Credit, ...]
    rejections: tuple[Rejection, ...]
    duplicates: int
    nodes: Mapping[str, NodeFigures]
    shares: Mapping[str, int]  # owner -> wei this epoch
    cumulative: Mapping[str, int]  # owner -> wei, all epochs so far (the tree's leaves)
    tree: RewardTree | None = field(default=None)  # None when nothing was ever allocated

    @property
    def total_flops(self) -> int:
        return sum(c.flops for c in self.credits)

    @property
    def allocated(self) -> int:
        return sum(self.cumulative.values())

    def owner_figures(self) -> dict[str, dict[str, Any]]:
        owners: dict[str, dict[str, Any]] = {}
        for peer, figures in sorted(self.nodes.items()):
            entry = owners.setdefault(
                figures.node.owner,
                {"nodes": [], "verified_flops": 0, "gpu_hours": 0.0, "cpu_hours": 0.0, "_mfu_den": 0.0},
            )
            entry["nodes"].append(peer)
            entry["verified_flops"] += figures.flops
            entry["cpu_hours" if figures.node.is_cpu else "gpu_hours"] += figures.device_hours
            if figures.mfu_peak is not None:
                entry["_mfu_den"] += figures.seconds * figures.mfu_peak
        for owner in set(self.shares) | set(self.cumulative):
            owners.setdefault(
                owner, {"nodes": [], "verified_flops": 0, "gpu_hours": 0.0, "cpu_hours": 0.0, "_mfu_den": 0.0}
            )
        out = {}
        for owner, entry in sorted(owners.items()):
            den = entry.pop("_mfu_den")
            out[owner] = {
                **entry,
                "verified_flops": str(entry["verified_flops"]),
                "mfu": (entry["verified_flops"] / den) if den > 0 else None,
                "amount_wei": str(self.shares.get(owner, 0)),
                "cumulative_wei": str(self.cumulative.get(owner, 0)),
            }
        return out

    def report(self) -> dict[str, Any]:
        """The epoch report: figures per owner and node, accepted receipts, refused ones with their reasons."""
        by_reason: dict[str, int] = {}
        for r in self.rejections:
            by_reason[str(r.reason)] = by_reason.get(str(r.reason), 0) + 1
        return {
            "version": REPORT_VERSION,
            "run_id": self.terms.run_id,
            "epoch": self.terms.epoch,
            "reward_wei": str(self.terms.reward_wei),
            "paid_wei": str(sum(self.shares.values())),
            "allocated_wei": str(self.allocated),
            "root": None if self.tree is None else "0x" + self.tree.root.hex(),
            "total_verified_flops": str(self.total_flops),
            "rounding": ROUNDING_RULE,
            "owners": self.owner_figures(),
            "nodes": {peer: f.as_dict() for peer, f in sorted(self.nodes.items())},
            "accepted": [c.as_dict() for c in self.credits],
            "rejected": [r.as_dict() for r in self.rejections],
            "counts": {
                "accepted": len(self.credits),
                "rejected": len(self.rejections),
                "duplicates": self.duplicates,
                "by_reason": by_reason,
            },
        }


def _parse(announcement: Announcement) -> Receipt:
    receipt = announcement.receipt
    if isinstance(receipt, Receipt):
        return receipt
    if isinstance(receipt, bytes | bytearray):
        return Receipt.from_bytes(bytes(receipt))
    try:
        return Receipt.from_proto(receipt)
    except AttributeError:
        raise ReceiptError(f"not a receipt: {type(receipt).__name__}") from None


def settle_epoch(
    terms: EpochTerms,
    announcements: Iterable[Announcement],
    directory: NodeDirectory,
    *,
    history: CreditHistory | None = None,
    previous_cumulative: Mapping[str, int] | None = None,
) -> EpochSettlement:
    """Check every announced receipt (in the order heard), credit the verified ones, share the reward, build the tree.

    `history`: rounds credited in earlier epochs (the ledger's); it is updated with this epoch's credits, so that
    consecutive epochs can be settled in memory. `previous_cumulative`: owner -> wei of the previous epochs.
    Writes nothing else: the chain and the ledger are `publish_epoch`'s.
    """
    from zoo_node.chain.merkle import RewardTree

    history = CreditHistory() if history is None else history
    parsed: list[tuple[Announcement, Receipt | None, str | None]] = []
    for a in announcements:
        try:
            parsed.append((a, _parse(a), None))
        except ReceiptError as exc:
            parsed.append((a, None, str(exc)))
    copies: dict[tuple[int, str, int], list[Receipt]] = {}
    for _, receipt, _ in parsed:
        if receipt is not None:
            copies.setdefault((receipt.body.run_id, receipt.body.shard, receipt.body.round), []).append(receipt)

    credits: list[Credit] = []
    rejections: list[Rejection] = []
    nodes: dict[str, NodeFigures] = {}
    seen: set[tuple[str, bytes]] = set()
    refused_seen: set[tuple[str, bytes, Reason]] = set()
    verified: VerifiedCache = {}  # every member announces the same co-signatures: verify each once
    duplicates = 0
    for announcement, receipt, error in parsed:
        who = announcement.announcer
        if receipt is None:
            rejections.append(Rejection(who, Reason.MALFORMED, error or "unparseable receipt"))
            continue
        body = receipt.body
        try:
            if body.run_id != terms.run_id:
                raise Refused(Reason.WRONG_RUN, f"receipt of run {body.run_id}, settling run {terms.run_id}")
            if body.shard not in terms.flops_per_sample:
                raise Refused(Reason.UNKNOWN_SHARD, f"{body.shard!r} is not a shard of run {terms.run_id}")
            node, workers = check_identity(receipt, who, directory)
            if (who, receipt.digest) in seen:
                duplicates += 1
                continue
            check_cosignatures(receipt, workers, copies[(body.run_id, body.shard, body.round)], verified)
            check_witnesses(receipt, directory, terms.min_nodes)
            check_not_credited(receipt, workers, history, terms.epoch)
            samples = sum(body.samples_of(w) or 0 for w in workers)
            flops = samples * int(terms.flops_per_sample[body.shard])
            figures = nodes.get(who) or NodeFigures(node)
            check_peak(flops, receipt, node, terms.epoch_length_s, figures.flops)
        except Refused as refused:
            # A copy refused again for the same reason is counted as a duplicate (a re-announced receipt must not
            # swell the report); a copy of the same digest that now passes (e.g. all signatures gathered) still can.
            if (who, receipt.digest, refused.reason) in refused_seen:
                duplicates += 1
                continue
            refused_seen.add((who, receipt.digest, refused.reason))
            rejections.append(Rejection(who, refused.reason, refused.detail, body.shard, body.round, receipt.digest))
            continue
        seen.add((who, receipt.digest))
        for worker in workers:
            history.add(body.shard, body.round, worker, receipt.digest, terms.epoch)
        figures.receipts += 1
        figures.samples += samples
        figures.flops += flops
        figures.seconds += receipt.seconds
        label = parse_device_label(receipt.device)
        if label is not None and label[2] is not None:
            figures.measured_peak = label[2]
        nodes[who] = figures
        credits.append(
            Credit(who, node.owner, workers, body.shard, body.round, receipt.digest, samples, flops, receipt.seconds,
                   receipt.device)
        )  # fmt: skip

    weights: dict[str, int] = {}
    for credit in credits:
        weights[credit.owner] = weights.get(credit.owner, 0) + credit.flops
    shares = share_pro_rata(terms.reward_wei, weights) if sum(weights.values()) > 0 else {}
    cumulative = dict(previous_cumulative or {})
    for owner, amount in shares.items():
        cumulative[owner] = cumulative.get(owner, 0) + amount
    tree = RewardTree.build(cumulative) if cumulative else None
    return EpochSettlement(terms, tuple(credits), tuple(rejections), duplicates, nodes, shares, cumulative, tree)


# ---- posting ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishedEpoch:
    run_id: int
    epoch: int
    root: bytes | None
    allocated: int
    claims_path: Path | None
    claims_uri: str | None
    posted: bool  # False: nothing to post, or the root was already on chain (recovered after a crash)


def claims_file_name(run_id: int, epoch: int) -> str:
    return f"run-{run_id}-epoch-{epoch}.json"


def write_claims_file(settlement: EpochSettlement, claims_dir: Path) -> Path:
    """The chain's claims file (`zoo_node.chain.proofs` format: amounts and proofs) with the epoch report added
    under `report`; written atomically. `rewards show|claim` read it at the root's `proofsURI`."""
    from zoo_node.chain.proofs import EpochClaims

    assert settlement.tree is not None
    terms = settlement.terms
    claims = EpochClaims.from_tree(terms.run_id, terms.epoch, settlement.tree)
    path = Path(claims_dir) / claims_file_name(terms.run_id, terms.epoch)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**claims.as_dict(), "report": settlement.report()}, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise SettlementError(f"{path}: cannot write the claims file: {exc.strerror}") from None
    return path


def publish_epoch(
    settlement: EpochSettlement, *, rewards: RewardsClient, claims_dir: Path, ledger: SettlementLedger
) -> PublishedEpoch:
    """Write the claims file, post the cumulative root (`postRoot`), then commit the epoch to the ledger.

    Crash-safe in that order: a root already on chain for this epoch and equal to ours (posted, then the coordinator
    died before the ledger commit) is recognised and only committed; a different one is an error.
    """
    terms = settlement.terms
    credits = [(c.shard, c.round, w, c.digest) for c in settlement.credits for w in c.workers]
    last = ledger.last_epoch(terms.run_id)
    if terms.epoch <= last:
        raise SettlementError(f"run {terms.run_id}: epoch {terms.epoch} is already settled (last settled: {last})")
    if settlement.tree is None:
        ledger.commit_epoch(
            run_id=terms.run_id,
            epoch=terms.epoch,
            credits=credits,
            cumulative=dict(settlement.cumulative),
            root=None,
            claims_uri=None,
            report=settlement.report(),
        )
        return PublishedEpoch(terms.run_id, terms.epoch, None, 0, None, None, posted=False)
    root, allocated = settlement.tree.root, settlement.tree.total
    path = write_claims_file(settlement, claims_dir)
    uri = path.resolve().as_uri()
    pool = rewards.pool(terms.run_id)
    posted = True
    if pool.epoch >= terms.epoch:
        if pool.epoch == terms.epoch and pool.root == root and pool.allocated == allocated:
            posted = False  # our own post, from before a crash
        else:
            raise SettlementError(
                f"run {terms.run_id}: the chain already has epoch {pool.epoch} with root 0x{pool.root.hex()}; "
                f"cannot post epoch {terms.epoch}"
            )
    if posted:
        rewards.post_root(terms.run_id, terms.epoch, root, allocated, uri)
    ledger.commit_epoch(
        run_id=terms.run_id,
        epoch=terms.epoch,
        credits=credits,
        cumulative=dict(settlement.cumulative),
        root=root,
        claims_uri=uri,
        report=settlement.report(),
    )
    return PublishedEpoch(terms.run_id, terms.epoch, root, allocated, path, uri, posted)


# ---- the FLOPs table ----------------------------------------------------------------------------------------
def load_flops_table(runspec_path: Path, *, timeout_s: float = 120.0) -> dict[str, int]:
    """FLOPs per sample of every shard of a run, computed by `zoo_node.model` in a child interpreter: the model
    package imports torch, which the coordinator's process never loads (layering)."""
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_node.worker.metering", "flops-table", str(runspec_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        raise SettlementError(f"{runspec_path}: cannot compute the run's FLOPs per sample: {detail}")
    try:
        table = json.loads(proc.stdout)
        return {str(shard): int(flops) for shard, flops in table.items()}
    except (ValueError, AttributeError, TypeError):
        raise SettlementError(f"{runspec_path}: the FLOPs table is not JSON: {proc.stdout[:200]!r}") from None


# ---- the coordinator's entry point --------------------------------------------------------------------------
class EpochSettler:
    """Settles a run's epochs for the coordinator daemon: reads the run's terms and nodes from the chain, checks the
    epoch's receipts against the ledger's history, posts the root with the coordinator's account, commits."""

    def __init__(
        self,
        chain: ChainClient,
        ledger: SettlementLedger,
        *,
        run_id: int,
        flops_per_sample: Mapping[str, int],
        claims_dir: Path,
        min_nodes: int = 2,
        require_joined: bool = True,
    ) -> None:
        self.chain = chain
        self.ledger = ledger
        self.run_id = run_id
        self.flops_per_sample = dict(flops_per_sample)
        self.claims_dir = Path(claims_dir)
        self.min_nodes = min_nodes
        self.require_joined = require_joined

    def terms(self, epoch: int) -> EpochTerms:
        run = self.chain.runs.get_run(self.run_id)
        if run is None:
            raise SettlementError(f"run {self.run_id} does not exist on chain")
        return EpochTerms(
            self.run_id, epoch, run.reward_per_epoch, float(run.epoch_length_s), self.flops_per_sample, self.min_nodes
        )

    def next_epoch(self) -> int:
        return self.ledger.last_epoch(self.run_id) + 1

    def epoch_ended(self, epoch: int) -> bool:
        run = self.chain.runs.get_run(self.run_id)
        latest = self.chain.rpc.call(lambda: self.chain.w3.eth.get_block("latest"), "latest block")
        return run is not None and int(latest["timestamp"]) >= run.epoch_end(epoch)

    def settle(
        self, epoch: int, announcements: Iterable[Announcement], bindings: WorkerBindings
    ) -> tuple[EpochSettlement, PublishedEpoch]:
        """Settle `epoch` (it must have ended on chain) and post its root; returns the settlement and the post."""
        if not self.epoch_ended(epoch):
            run = self.chain.runs.get_run(self.run_id)
            ends = run.epoch_end(epoch) if run is not None else "?"
            raise SettlementError(f"run {self.run_id}: epoch {epoch} has not ended yet (it ends at unix time {ends})")
        directory = ChainNodeDirectory(self.chain.nodes, self.run_id, bindings, require_joined=self.require_joined)
        settlement = settle_epoch(
            self.terms(epoch),
            announcements,
            directory,
            history=CreditHistory(self.ledger.credited(self.run_id)),
            previous_cumulative=self.ledger.cumulative(self.run_id),
        )
        published = publish_epoch(
            settlement, rewards=self.chain.rewards, claims_dir=self.claims_dir, ledger=self.ledger
        )
        return settlement, published

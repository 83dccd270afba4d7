"""Settling the run's epochs, once each, across crashes: the coordinator's side of the settlement library.

For each epoch that has ended on chain, in order:

1. take the receipts heard before the epoch's end that no settled epoch covers (the store's, committed on arrival);
2. snapshot what settlement checks them against: the chain's answer for every node involved (owner, hardware,
   active and joined) and the worker bindings heard in heartbeats;
3. settle with `zoo_node.coordinator.settlement.settle_epoch` (pure) and **journal the intent** (receipt ids,
   terms, snapshot, the root it gives) before anything is sent;
4. `publish_epoch`: claims file, `postRoot` unless the chain already holds this epoch (it checks the chain's last
   posted epoch first), then the ledger's commit;
5. mark the receipts as covered and the intent done.

After a kill -9 anywhere in 3-5 the next start finds the unfinished intent and replays it: the same receipts against
the same snapshot give the same root, so a root already posted is recognised and only committed, and one not yet
posted is posted once. An epoch is never settled twice (the ledger refuses a second commit, the chain a second post
of an epoch) and no receipt is lost or counted in two epochs (receipts are marked in the same transaction that
closes the intent).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_node.coordinator.checks import CreditHistory
from zoo_node.coordinator.nodes import ChainNodeDirectory, RegisteredNode, StaticNodeDirectory, WorkerBindings
from zoo_node.coordinator.settlement import (
    Announcement,
    EpochSettlement,
    EpochTerms,
    SettlementError,
    publish_epoch,
    settle_epoch,
)
from zoo_node.receipts import Receipt, ReceiptError

if TYPE_CHECKING:
    from zoo_node.chain.client import ChainClient
    from zoo_node.chain.run_registry import RunInfo
    from zoo_node.coordinator.ledger import SettlementLedger
    from zoo_node.coordinator.store import CoordinatorStore, StoredReceipt

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SettledOutcome:
    """What settling one epoch did."""

    epoch: int
    root: bytes | None
    allocated: int
    paid: int
    accepted: int
    rejected: int
    receipts: int
    posted: bool  # a postRoot transaction was sent by this call
    recovered: bool  # finished an intent left by an earlier process


class EpochKeeper:
    """Settles the run's ended epochs in order (blocking: chain RPC and SQLite; call it off the event loop)."""

    def __init__(
        self,
        chain: ChainClient,
        ledger: SettlementLedger,
        store: CoordinatorStore,
        *,
        run_id: int,
        flops_per_sample: dict[str, int],
        min_nodes: int,
        claims_dir: Path,
        require_joined: bool = True,
    ) -> None:
        self.chain = chain
        self.ledger = ledger
        self.store = store
        self.run_id = run_id
        self.flops_per_sample = dict(flops_per_sample)
        self.min_nodes = min_nodes
        self.claims_dir = Path(claims_dir)
        self.require_joined = require_joined

    # ---- time
    def chain_now(self) -> float:
        """The later of this machine's clock and the latest block's time (a dev chain's clock may run ahead)."""
        block = self.chain.rpc.call(lambda: self.chain.w3.eth.get_block("latest"), "latest block")
        return max(time.time(), float(block["timestamp"]))

    @staticmethod
    def ended_epochs(run: RunInfo, now: float) -> int:
        """How many epochs of the run have ended at `now` (epochs count from 1)."""
        if now < run.start_time:
            return 0
        return int((now - run.start_time) // run.epoch_length_s)

    # ---- settlement
    def settle_due(self) -> list[SettledOutcome]:
        """Finish an interrupted settlement, then settle every epoch that has ended; returns what was settled."""
        from zoo_node.chain.run_registry import RunStatus

        done: list[SettledOutcome] = []
        recovered = self.recover()
        if recovered is not None:
            done.append(recovered)
        run = self.chain.runs.get_run(self.run_id)
        if run is None:
            raise SettlementError(f"run {self.run_id} does not exist on chain")
        if run.status != RunStatus.ACTIVE:
            return done
        ended = self.ended_epochs(run, self.chain_now())
        for epoch in range(self.ledger.last_epoch(self.run_id) + 1, ended + 1):
            done.append(self.settle(epoch, run))
        return done

    def settle(self, epoch: int, run: RunInfo) -> SettledOutcome:
        """Settle one ended epoch (journal the intent, publish, close the intent)."""
        receipts = self.store.pending_receipts(self.run_id, heard_before=float(run.epoch_end(epoch)))
        intent = {
            "receipt_ids": [r.id for r in receipts],
            "terms": {
                "reward_wei": str(run.reward_per_epoch),
                "epoch_length_s": run.epoch_length_s,
                "flops_per_sample": self.flops_per_sample,
                "min_nodes": self.min_nodes,
            },
            "directory": self.snapshot_directory(receipts),
        }
        settlement = self._settle(epoch, intent, receipts)
        intent["root"] = None if settlement.tree is None else "0x" + settlement.tree.root.hex()
        self.store.save_intent(self.run_id, epoch, intent)
        return self._publish(epoch, intent, settlement, recovered=False)

    def recover(self) -> SettledOutcome | None:
        """Finish the settlement an earlier process journaled but did not complete (None: there is none)."""
        unfinished = self.store.unfinished_intent(self.run_id)
        if unfinished is None:
            return None
        epoch, intent = unfinished
        logger.info("run %d: finishing the interrupted settlement of epoch %d", self.run_id, epoch)
        committed = self.ledger.epoch(self.run_id, epoch)
        if committed is not None:
            # Only the receipts were left to mark. (Settling again would check them against a history that now
            # holds them, and refuse them all as replays.)
            self.store.finish_intent(self.run_id, epoch, intent["receipt_ids"])
            counts = committed.report.get("counts", {})
            return SettledOutcome(
                epoch=epoch,
                root=committed.root,
                allocated=committed.allocated,
                paid=int(committed.report.get("paid_wei", 0)),
                accepted=int(counts.get("accepted", 0)),
                rejected=int(counts.get("rejected", 0)),
                receipts=len(intent["receipt_ids"]),
                posted=False,
                recovered=True,
            )
        receipts = self.store.receipts_by_id(intent["receipt_ids"])
        if len(receipts) != len(intent["receipt_ids"]):
            raise SettlementError(f"run {self.run_id} epoch {epoch}: receipts of the journaled intent are missing")
        settlement = self._settle(epoch, intent, receipts)
        root = None if settlement.tree is None else "0x" + settlement.tree.root.hex()
        if root != intent["root"]:
            raise SettlementError(
                f"run {self.run_id} epoch {epoch}: replaying the journaled settlement gives root {root}, "
                f"not the journaled {intent['root']} (the ledger changed underneath?)"
            )
        return self._publish(epoch, intent, settlement, recovered=True)

    def _settle(self, epoch: int, intent: dict[str, Any], receipts: list[StoredReceipt]) -> EpochSettlement:
        terms = intent["terms"]
        snapshot = intent["directory"]
        directory = StaticNodeDirectory(
            [RegisteredNode(**node) for node in snapshot["nodes"].values() if node is not None],
            WorkerBindings(snapshot["bindings"]),
        )
        return settle_epoch(
            EpochTerms(
                self.run_id,
                epoch,
                int(terms["reward_wei"]),
                float(terms["epoch_length_s"]),
                {k: int(v) for k, v in terms["flops_per_sample"].items()},
                int(terms["min_nodes"]),
            ),
            [Announcement(r.announcer, r.receipt) for r in receipts],
            directory,
            history=CreditHistory(self.ledger.credited(self.run_id)),
            previous_cumulative=self.ledger.cumulative(self.run_id),
        )

    def _publish(
        self, epoch: int, intent: dict[str, Any], settlement: EpochSettlement, *, recovered: bool
    ) -> SettledOutcome:
        rewards, ledger = self.chain.rewards, self.ledger
        posted = publish_epoch(settlement, rewards=rewards, claims_dir=self.claims_dir, ledger=ledger).posted
        self.store.finish_intent(self.run_id, epoch, intent["receipt_ids"])
        outcome = SettledOutcome(
            epoch=epoch,
            root=None if settlement.tree is None else settlement.tree.root,
            allocated=settlement.allocated,
            paid=sum(settlement.shares.values()),
            accepted=len(settlement.credits),
            rejected=len(settlement.rejections),
            receipts=len(intent["receipt_ids"]),
            posted=posted,
            recovered=recovered,
        )
        logger.info(
            "run %d: epoch %d settled: %d receipts, %d accepted, %d rejected, paid %d wei%s",
            self.run_id, epoch, outcome.receipts, outcome.accepted, outcome.rejected, outcome.paid,
            " (root posted)" if posted else "",
        )  # fmt: skip
        return outcome

    def snapshot_directory(self, receipts: list[StoredReceipt]) -> dict[str, Any]:
        """The chain's answers (owner, hardware; None: not an active node of the run) for every node the receipts
        involve, and the worker bindings: settlement's whole view of who is who, frozen for a replay."""
        bindings = self.store.bindings(self.run_id)
        chain_directory = ChainNodeDirectory(
            self.chain.nodes, self.run_id, WorkerBindings(bindings), require_joined=self.require_joined
        )
        peers = {r.announcer for r in receipts}
        for stored in receipts:
            try:
                members = Receipt.from_bytes(stored.receipt).body.peer_ids
            except ReceiptError:
                continue
            peers.update(bindings[m] for m in members if m in bindings)
        nodes = {}
        for peer in sorted(peers):
            node = chain_directory.node(peer)
            nodes[peer] = None if node is None else dataclasses.asdict(node)
        return {"nodes": nodes, "bindings": bindings}

"""The data plane as the supervisor runs it: a work function for `zoo_node.worker.lifecycle.run_worker`.

It starts a `WorkerNode` for the assignment (its shard if one is assigned, else chosen by coverage; bootstrap from
the data-plane multiaddrs the supervisor heard in the gossip), hands every receipt to the supervisor's journal,
reports cumulative progress, and drains when told.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from zoo_node.config import NodeConfig
from zoo_node.runspec import RunSpec, load_runspec
from zoo_node.worker.node import WorkerError, WorkerNode, WorkerOptions
from zoo_node.worker.receipts import Receipt

logger = logging.getLogger(__name__)


def receipt_message(receipt: Receipt, *, run_id: int, peer: str, device: str) -> Any:
    """The supervisor's `Receipt` message for one of our rounds: the group's members and samples, and this node's
    own tokens, FLOPs and seconds."""
    from zoo_node.proto import worker_pb2

    own = next((m for m in receipt.members if m.peer == peer), None)
    return worker_pb2.Receipt(
        run_id=run_id,
        shard=receipt.shard,
        round=receipt.round,
        members=[worker_pb2.ReceiptMember(peer_id=m.peer, samples=m.samples) for m in receipt.members],
        tokens=own.tokens if own else 0,
        flops=own.flops if own else 0.0,
        seconds=own.seconds if own else 0.0,
        device=device,
    )


class _Totals:
    def __init__(self, peer: str) -> None:
        self.peer, self.tokens, self.flops, self.lock = peer, 0, 0.0, threading.Lock()

    def add(self, receipt: Receipt) -> None:
        for member in receipt.members:
            if member.peer == self.peer:
                with self.lock:
                    self.tokens += member.tokens
                    self.flops += member.flops


def training_work(spec_path: Path, config: NodeConfig):  # -> WorkFn (lifecycle's type)
    """The work function that trains `spec_path`'s run under the supervisor."""

    def work(ctx: Any) -> None:
        from zoo_node.proto import worker_pb2

        spec: RunSpec = load_runspec(spec_path)
        wanted = ctx.assignment.spec_hash.hex() if ctx.assignment.spec_hash else ""
        if wanted and wanted != spec.content_hash:
            raise WorkerError(f"{spec_path}: run spec hash {spec.content_hash} is not the run's {wanted}")
        device = ctx.assignment.device or "cpu"
        holder: dict[str, Any] = {}

        def submit(receipt: Receipt) -> None:
            holder["totals"].add(receipt)
            peer = holder["node"].peer
            ctx.submit_receipt(receipt_message(receipt, run_id=ctx.assignment.run_id, peer=peer, device=device))

        options = WorkerOptions(
            initial_peers=list(ctx.assignment.data_bootstrap),
            shards=[ctx.assignment.shard] if ctx.assignment.shard else None,
            extra_sinks=[submit],
        )
        node = WorkerNode(ctx.home, config, spec, options)
        holder["node"] = node
        node.start()
        holder["totals"] = totals = _Totals(node.peer)
        ctx.set_data_multiaddrs(node.maddrs)
        ctx.set_health(worker_pb2.HEALTH_SERVING, f"serving {', '.join(node.runtimes)}")
        started = time.monotonic()
        try:
            while not ctx.drain.is_set():
                steps = node.driver.step if node.driver else max((t.round for t in node.trainers.values()), default=0)
                with totals.lock:
                    tokens, flops = totals.tokens, totals.flops
                rate = tokens / max(1e-9, time.monotonic() - started)
                ctx.report_progress(steps=steps, tokens=tokens, flops=flops, tokens_per_s=rate)
                ctx.wait(2.0)
            ctx.set_health(worker_pb2.HEALTH_DRAINING)
        finally:
            node.drain()

    return work

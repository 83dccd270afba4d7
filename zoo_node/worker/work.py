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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zoo_node.config import NodeConfig
from zoo_node.identity import load_data_seed
from zoo_node.receipts import RoundBody
from zoo_node.runspec import RunSpec, load_runspec
from zoo_node.worker.cosigning import cosigned_receipt
from zoo_node.worker.node import WorkerError, WorkerNode, WorkerOptions
from zoo_node.worker.receipts import Receipt, receipt_samples

logger = logging.getLogger(__name__)


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
        from zoo_node.worker.metering import detect_device, mfu

        # The device as receipts name it ("cpu x1 (measured ...)" or the GPU's name): the coordinator checks claimed
        # work against its peak. Detected before serving, so the calibration GEMM runs on an idle worker.
        device_info = detect_device(ctx.assignment.device or config.worker.device)
        device = device_info.label
        holder: dict[str, Any] = {}

        data_key = Ed25519PrivateKey.from_private_bytes(load_data_seed(ctx.home))

        def submit(receipt: Receipt) -> None:
            """Co-sign the round with its group through the DHT and journal it (work accounting's format)."""
            holder["totals"].add(receipt)
            node = holder["node"]
            own = next((m for m in receipt.members if m.peer == node.peer), None)
            if not receipt.averaged or own is None or len(receipt.members) < 2:
                return  # a replica that stepped alone has no witness: such a receipt would be refused
            body = RoundBody.of(ctx.assignment.run_id, receipt.shard, receipt.round, receipt_samples(receipt))
            signed = cosigned_receipt(
                node.dht,
                spec.name,
                body,
                data_key,
                tokens=own.tokens,
                flops=own.flops,
                seconds=own.seconds,
                device=device,
                timeout_s=spec.averaging.averaging_timeout_s,
            )
            ctx.submit_receipt(signed.to_proto())

        options = WorkerOptions(
            initial_peers=list(ctx.assignment.data_bootstrap),
            shards=[ctx.assignment.shard] if ctx.assignment.shard else None,
            num_shards=config.worker.num_shards,
            extra_sinks=[submit],
        )
        node = WorkerNode(ctx.home, config, spec, options)
        holder["node"] = node
        node.start()
        holder["totals"] = totals = _Totals(node.peer)
        ctx.set_data_multiaddrs(node.maddrs)
        ctx.set_shard(",".join(node.runtimes))  # heartbeats and the coordinator's coverage name what it serves
        ctx.set_health(worker_pb2.HEALTH_SERVING, f"serving {', '.join(node.runtimes)}")
        peak = device_info.total_peak_flops
        started = time.monotonic()
        try:
            while not ctx.drain.is_set():
                steps = node.driver.step if node.driver else max((t.round for t in node.trainers.values()), default=0)
                with totals.lock:
                    tokens, flops = totals.tokens, totals.flops
                elapsed = max(1e-9, time.monotonic() - started)
                figures = {"loss": node.driver.losses[-1]} if node.driver and node.driver.losses else {}
                ctx.report_progress(
                    steps=steps,
                    tokens=tokens,
                    flops=flops,
                    tokens_per_s=tokens / elapsed,
                    mfu=mfu(flops, elapsed, peak),
                    **figures,
                )
                ctx.wait(2.0)
            ctx.set_health(worker_pb2.HEALTH_DRAINING)
        finally:
            node.drain()

    return work

"""The driver: on a worker that serves stage 0, it feeds the run's micro-batches through the pipeline and back.

For each micro-batch (coordinates: seed, epoch, step, this node's PeerID, index) stage 0 runs here, every later
stage on the replica the router picks (inside them, the MoE layers reach their expert groups the same way), and
backward flows back through the same replicas. The loss is the last stage's cross-entropy plus every stage's
auxiliary loss. A micro-batch that fails on every replica is skipped (and logged): the run goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from zoo_node.data.sharding import BatchCoordinates, TokenStream
from zoo_node.runspec import RunSpec
from zoo_node.worker.remote import CallFailed, ShardCall, remote_call

logger = logging.getLogger(__name__)

CallFactory = Callable[..., ShardCall]


class Pipeline:
    """Forward and backward of one micro-batch through all stages."""

    def __init__(self, n_stages: int, make_call: CallFactory) -> None:
        self.n_stages = n_stages
        self.make_call = make_call

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, header: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy, total auxiliary loss), differentiable through every remote stage."""
        n_tokens = tokens.numel()
        x = tokens
        aux_total = torch.zeros(())
        for s in range(self.n_stages):
            inputs = (x, targets) if s == self.n_stages - 1 else (x,)
            x, aux = remote_call(self.make_call(f"stage/{s}", header, n_tokens), *inputs)
            aux_total = aux_total + aux
        return x, aux_total

    def train_micro_batch(self, tokens: torch.Tensor, targets: torch.Tensor, header: dict) -> tuple[float, float]:
        loss, aux = self.loss(tokens, targets, header)
        (loss + aux).backward()
        return loss.item(), aux.item()


class Driver:
    """Runs micro-batches until `max_steps` (or stopped), logging each step's mean loss to `log_path` (JSON lines)."""

    def __init__(
        self,
        spec: RunSpec,
        node: str,
        stream: TokenStream,
        pipeline: Pipeline,
        log_path: Path | None,
        uncovered: Callable[[], list[str]] = list,
    ) -> None:
        self.spec, self.node, self.stream, self.pipeline, self.log_path = spec, node, stream, pipeline, log_path
        self.uncovered = uncovered
        self.step = 0
        self.failed = 0
        self.losses: list[float] = []
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._thread: threading.Thread | None = None

    def micro_batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, BatchCoordinates]:
        d = self.spec.data
        where = BatchCoordinates(d.seed, step // d.epoch_length_steps, step, self.node, micro)
        rows = torch.tensor(self.stream.micro_batch(where), dtype=torch.int64)
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), where

    def run_step(self, step: int) -> float | None:
        losses = []
        started = time.monotonic()
        for micro in range(self.spec.data.micro_batches_per_step):
            tokens, targets, where = self.micro_batch(step, micro)
            header = {"micro": f"{self.node}/{where.epoch}/{step}/{micro}", "samples": int(tokens.shape[0])}
            try:
                loss, _ = self.pipeline.train_micro_batch(tokens, targets, header)
                losses.append(loss)
            except CallFailed as exc:
                self.failed += 1
                logger.warning("micro-batch failed; skipped", extra={"step": step, "micro": micro, "why": str(exc)})
        if not losses:
            return None
        mean = sum(losses) / len(losses)
        self.losses.append(mean)
        if self.log_path is not None:
            with self.log_path.open("a") as out:
                entry = {"step": step, "loss": mean, "micro_batches": len(losses), "failed": self.failed}
                out.write(json.dumps({**entry, "seconds": time.monotonic() - started}) + "\n")
        return mean

    def _wait_for_coverage(self) -> None:
        """Until every shard of the run has a live replica (the swarm is still gathering, or a shard lost its
        last replica and waits for a newcomer)."""
        while not self._stop.is_set():
            missing = self.uncovered()
            if not missing:
                return
            logger.info("waiting for shards to be served", extra={"missing": missing})
            self._stop.wait(self.spec.routing.announce_period_s)

    def _loop(self) -> None:
        try:
            self._wait_for_coverage()
            while not self._stop.is_set():
                if self.spec.max_steps is not None and self.step >= self.spec.max_steps:
                    break
                if self.run_step(self.step) is None:  # every micro-batch failed: wait for coverage, retry the step
                    self._stop.wait(self.spec.routing.announce_period_s)
                    self._wait_for_coverage()
                    continue
                self.step += 1
        except Exception:
            logger.exception("the driver stopped on an error")
        finally:
            self.finished.set()

    def start(self, first_step: int = 0) -> None:
        self.step = first_step
        self._thread = threading.Thread(target=self._loop, name="driver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

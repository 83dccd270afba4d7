"""One served shard: forward and backward on its module, the activations kept between them, and its work counters.

Forward keeps the autograd graph (inputs and outputs) under a key chosen by the caller, so backward needs only the
output gradients and runs the forward once per micro-batch (hivemind.moe recomputes it). A backward whose
activations are gone (evicted after `activation_ttl_s`, or a retry landing on another replica) recomputes the forward
from inputs the caller resends.

Parameters change only through `exclusive()`: it stops new work, waits until no graph is pending (an in-place
update under a pending graph would corrupt its backward), and hands the shard over for an optimizer step.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from zoo_node.errors import ZooError
from zoo_node.worker.wire import BadTensorError, TensorCheck, check_tensors


class MissingActivations(ZooError):
    """A backward came for a forward this replica no longer holds (or never ran), and no inputs to recompute."""


class ShardBackend(Protocol):
    """What a shard (a pipeline stage or an expert group) offers the runtime."""

    name: str
    module: torch.nn.Module

    def input_checks(self, header: dict[str, Any]) -> Sequence[TensorCheck]: ...

    def forward(self, inputs: Sequence[torch.Tensor], header: dict[str, Any]) -> Sequence[torch.Tensor]: ...

    def work(self, inputs: Sequence[torch.Tensor], header: dict[str, Any]) -> tuple[int, float]:
        """(tokens, model FLOPs of forward + backward) of one call."""
        ...


@dataclass
class _Pending:
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    created: float
    micro: str = ""


@dataclass
class Progress:
    """Work accumulated since the last averaging round."""

    samples: int = 0
    micro_batches: int = 0
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    seen: set[str] = field(default_factory=set)


@dataclass
class Throughput:
    """Exponential moving average of tokens per second of compute, for the routing announcements."""

    alpha: float = 0.2
    tokens_per_s: float = 0.0

    def update(self, tokens: int, seconds: float) -> None:
        if seconds <= 0 or tokens <= 0:
            return
        rate = tokens / seconds
        self.tokens_per_s = rate if self.tokens_per_s == 0 else (1 - self.alpha) * self.tokens_per_s + self.alpha * rate


class ShardRuntime:
    """Serves forward/backward of one shard; thread-safe (calls run on executor threads)."""

    def __init__(self, backend: ShardBackend, *, activation_ttl_s: float = 60.0) -> None:
        self.backend = backend
        self.name = backend.name
        self.activation_ttl_s = activation_ttl_s
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._running = 0  # calls inside forward/backward right now
        self._closed = False  # new micro-batches wait: an update is draining or holding the shard
        self._held = False  # an `exclusive()` holder exists
        self.progress = Progress()
        self.throughput = Throughput()
        self.queued_tokens = 0
        self.evicted = 0

    # --- serving ----------------------------------------------------------------------------------------------
    def _in_flight(self, key: str | None, micro: str | None) -> bool:
        """Part of work already under way: a backward whose graph is pending, or another call of a micro-batch
        that has a graph pending here (an expert group is called once per MoE layer of the stage)."""
        if key is not None and key in self._pending:
            return True
        return micro is not None and any(e.micro == micro for e in self._pending.values())

    @contextlib.contextmanager
    def _admitted(self, timeout: float, key: str | None = None, micro: str | None = None) -> Iterator[None]:
        """Count a call as running. While an update waits, new micro-batches wait; work under way goes ahead
        (finishing it is what the update waits for; blocking it would deadlock the micro-batch)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._closed and not self._in_flight(key, micro):
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{self.name}: busy with an optimizer step for over {timeout:.0f} s")
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def forward(
        self, key: str, inputs: Sequence[torch.Tensor], header: dict[str, Any], *, timeout: float = 60.0
    ) -> list[torch.Tensor]:
        """Run the shard on checked inputs, keep the graph under `key`, return detached outputs."""
        check_tensors(inputs, self.backend.input_checks(header))
        tokens, _ = self.backend.work(inputs, header)
        self.queued_tokens += tokens
        try:
            with self._admitted(timeout, micro=str(header.get("micro", ""))):
                self._evict_expired()
                start = time.perf_counter()
                leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
                with torch.enable_grad():
                    outputs = list(self.backend.forward(leaves, header))
                seconds = time.perf_counter() - start
                self.throughput.update(tokens, seconds)
                with self._cond:
                    self.progress.seconds += seconds  # compute seconds: forward here, backward in _account
                    self._pending[key] = _Pending(leaves, outputs, time.monotonic(), str(header.get("micro", "")))
        finally:
            self.queued_tokens -= tokens
        return [y.detach() for y in outputs]

    def backward(
        self,
        key: str,
        grad_outputs: Sequence[torch.Tensor],
        header: dict[str, Any],
        *,
        inputs: Sequence[torch.Tensor] | None = None,
        timeout: float = 60.0,
    ) -> list[torch.Tensor]:
        """Backpropagate `grad_outputs` through the graph kept under `key` (or a recompute from `inputs`).

        Accumulates parameter gradients and returns the gradients of the floating-point inputs.
        """
        with self._admitted(timeout, key):
            with self._cond:
                entry = self._pending.pop(key, None)
            if entry is None:
                if inputs is None:
                    raise MissingActivations(f"{self.name}: no activations for {key} (expired, or not run here)")
                check_tensors(inputs, self.backend.input_checks(header))
                leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
                with torch.enable_grad():
                    entry = _Pending(leaves, list(self.backend.forward(leaves, header)), time.monotonic())
            if len(grad_outputs) != len(entry.outputs):
                raise ValueError(f"{self.name}: {len(grad_outputs)} output gradients for {len(entry.outputs)} outputs")
            pairs = [
                (out, grad)
                for out, grad in zip(entry.outputs, grad_outputs, strict=True)
                if out.requires_grad and grad is not None
            ]
            for out, grad in pairs:
                if grad.shape != out.shape or not bool(torch.isfinite(grad).all()):
                    raise BadTensorError(f"{self.name}: output gradient of shape {tuple(grad.shape)} or not finite")
            start = time.perf_counter()
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs])
            seconds = time.perf_counter() - start
            tokens, flops = self.backend.work(entry.inputs, header)
            self._account(header, tokens, flops, seconds)
            return [
                (x.grad if x.grad is not None else torch.zeros_like(x)) if x.is_floating_point() else torch.zeros(0)
                for x in entry.inputs
            ]

    def _account(self, header: dict[str, Any], tokens: int, flops: float, seconds: float) -> None:
        with self._cond:
            p = self.progress
            p.tokens += tokens
            p.flops += flops
            p.seconds += seconds
            micro = str(header.get("micro", ""))
            if micro not in p.seen:  # an expert group is called once per MoE layer: count the micro-batch once
                p.seen.add(micro)
                p.micro_batches += 1
                p.samples += int(header.get("samples", 0))

    def _evict_expired(self) -> None:
        now = time.monotonic()
        with self._cond:
            for key in [k for k, e in self._pending.items() if now - e.created > self.activation_ttl_s]:
                del self._pending[key]
                self.evicted += 1

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    # --- parameter updates ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def exclusive(self, drain_timeout: float = 10.0, *, take_progress: bool = True) -> Iterator[Progress]:
        """Hold the shard with no call running and no graph pending; yields the progress counters (and resets
        them if `take_progress`). One holder at a time.

        Graphs still pending after `drain_timeout` are dropped: their backward recomputes from resent inputs. The
        lock is not held while the caller works: calls that arrive meanwhile wait with their own timeout, so a
        holder that blocks (an averager's lock, a slow peer) shows as timed-out calls, not as a silent hang.
        """
        deadline = time.monotonic() + drain_timeout
        with self._cond:
            while self._held:
                self._cond.wait()
            self._held = self._closed = True
            try:
                while self._running or self._pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if self._running:  # a call is mid-flight: it finishes soon, wait for it
                            self._cond.wait(timeout=1.0)
                            continue
                        self.evicted += len(self._pending)
                        self._pending.clear()
                        break
                    self._cond.wait(timeout=left)
                progress = self.progress
                if take_progress:
                    self.progress = Progress()
            except BaseException:
                self._held = self._closed = False
                self._cond.notify_all()
                raise
        try:
            yield progress
        finally:
            with self._cond:
                self._held = self._closed = False
                self._cond.notify_all()

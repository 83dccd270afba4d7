"""Calling a shard wherever it is served: a torch autograd function whose forward and backward are RPCs.

`remote_call(call, *inputs)` behaves like a local module call: outputs carry a graph, and backward sends the output
gradients to the replica that ran the forward (it kept the activations). If that replica is gone, backward goes to
another one with the inputs attached, which recomputes the forward. A shard this worker serves itself is called
directly (p2pd refuses to dial itself), through the same runtime, so counters and update gating are the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import torch
from hivemind.p2p import P2PHandlerError, PeerID
from hivemind.utils.asyncio import as_aiter

from zoo_node.errors import ZooError
from zoo_node.worker.routing import NoReplica, Router
from zoo_node.worker.runtime import MissingActivations, ShardRuntime
from zoo_node.worker.servicer import ShardServicer
from zoo_node.worker.wire import IncompleteMessage, decode, decode_stream, encode

logger = logging.getLogger(__name__)
_call_ids = itertools.count()


class CallFailed(ZooError):
    """A forward or backward could not be completed by any replica."""


def is_nested_failure(exc: BaseException) -> bool:
    """Whether a call failed because a shard the callee called had no working replica (not the callee's fault)."""
    return isinstance(exc, CallFailed | NoReplica) or "failed on every replica tried" in str(exc)


def is_missing_activations(exc: BaseException) -> bool:
    """Whether the callee is fine but no longer holds the forward's graph (evicted, or dropped for an update)."""
    return isinstance(exc, MissingActivations) or "MissingActivations" in str(exc) or "no activations for" in str(exc)


class Transport:
    """Runs forward/backward on a given peer: over p2p, or in-process for this worker's own shards."""

    def __init__(
        self, p2p: Any, loop: asyncio.AbstractEventLoop, namespace: str, local_peer: str, local: dict[str, ShardRuntime]
    ) -> None:
        self.p2p = p2p
        self.loop = loop
        self.namespace = namespace
        self.local_peer = local_peer
        self.local = local

    def _remote(self, method: str, peer: str, messages: list, timeout: float) -> list[torch.Tensor]:
        async def call() -> list[torch.Tensor]:
            stub = ShardServicer.get_stub(self.p2p, PeerID.from_base58(peer), namespace=self.namespace)
            if len(messages) == 1:  # fits in one p2pd message: the unary RPC (persistent connection, no stream)
                try:
                    tensors, _ = decode([await getattr(stub, method)(messages[0])])
                    return tensors
                except P2PHandlerError as exc:
                    if "TooLargeForOneMessage" not in str(exc) and "use the streaming RPC" not in str(exc):
                        raise
            stream = await getattr(stub, method + "_stream")(as_aiter(*messages))
            tensors, _ = await decode_stream(stream)
            return tensors

        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(call(), timeout), self.loop)
        try:
            return future.result(timeout + 1.0)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"{method} on {peer} took over {timeout:.0f} s") from None

    def forward(self, peer: str, header: dict, inputs: Sequence[torch.Tensor], timeout: float) -> list[torch.Tensor]:
        if peer == self.local_peer:
            return self.local[header["shard"]].forward(f"{peer}/{header['key']}", inputs, header, timeout=timeout)
        return self._remote("rpc_forward", peer, encode(inputs, header), timeout)

    def backward(
        self,
        peer: str,
        header: dict,
        grads: Sequence[torch.Tensor],
        inputs: Sequence[torch.Tensor] | None,
        timeout: float,
    ) -> list[torch.Tensor]:
        if peer == self.local_peer:
            runtime = self.local[header["shard"]]
            return runtime.backward(f"{peer}/{header['key']}", grads, header, inputs=inputs, timeout=timeout)
        tensors = list(grads) + list(inputs or [])
        return self._remote("rpc_backward", peer, encode(tensors, {**header, "n_grads": len(grads)}), timeout)

    def inspect(self, peer: str, shard: str, timeout: float = 30.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, accumulated gradient) of every parameter of `shard` on `peer`, by name."""
        from hivemind.proto import runtime_pb2

        async def call() -> tuple[list[torch.Tensor], dict]:
            stub = ShardServicer.get_stub(self.p2p, PeerID.from_base58(peer), namespace=self.namespace)
            return await decode_stream(await stub.rpc_inspect(runtime_pb2.ExpertUID(uid=shard)))

        for attempt in range(3):
            try:
                future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(call(), timeout), self.loop)
                tensors, header = future.result()
                break
            except IncompleteMessage:
                if attempt == 2:
                    raise
        return {name: (tensors[2 * i], tensors[2 * i + 1]) for i, name in enumerate(header["names"])}


class ShardCall:
    """One call of one shard (a micro-batch through a stage, or one MoE layer's tokens through an expert group)."""

    def __init__(
        self,
        router: Router,
        transport: Transport,
        shard: str,
        header: dict[str, Any],
        tokens: int,
        *,
        max_attempts: int = 4,
        timeout_s: float = 30.0,
    ) -> None:
        self.router, self.transport, self.shard = router, transport, shard
        self.header = {**header, "shard": shard, "key": f"{os.getpid()}-{next(_call_ids)}"}
        self.tokens, self.max_attempts, self.timeout_s = tokens, max_attempts, timeout_s
        self.peer: str | None = None
        self.inputs: list[torch.Tensor] = []
        self.attempts: list[str] = []

    def _attempt(self, fn_name: str, exclude: set[str], *args: Any) -> tuple[str, list[torch.Tensor]]:
        last_error: BaseException | None = None
        for _ in range(self.max_attempts):
            try:
                record = self.router.choose(self.shard, self.tokens, exclude)
            except NoReplica as exc:
                last_error = exc
                break
            self.router.started(self.shard, record.peer, self.tokens)
            try:
                out = getattr(self.transport, fn_name)(record.peer, self.header, *args, self.timeout_s)
                return record.peer, out
            except Exception as exc:
                last_error = exc
                exclude.add(record.peer)
                self.attempts.append(f"{record.peer}: {type(exc).__name__}: {exc}")
                nested = is_nested_failure(exc)
                logger.warning(
                    "call failed" + ("" if nested else "; replica banned"),
                    extra={"shard": self.shard, "peer": record.peer, "call": fn_name, "why": str(exc)[:300]},
                )
                if not nested:  # a replica whose own downstream calls failed is not at fault
                    self.router.ban(self.shard, record)
            finally:
                self.router.finished(self.shard, record.peer, self.tokens)
        raise CallFailed(f"{fn_name} of {self.shard} failed on every replica tried: {last_error}")

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self.inputs = [x.detach() for x in inputs]
        self.peer, outputs = self._attempt("forward", set(), self.inputs)
        return outputs

    def backward(self, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        assert self.peer is not None, "backward before forward"
        if not self.router.is_banned(self.shard, self.peer):
            try:
                return self.transport.backward(self.peer, self.header, grads, None, self.timeout_s)
            except Exception as exc:
                self.attempts.append(f"{self.peer}: {type(exc).__name__}: {exc}")
                if is_missing_activations(exc):  # alive, but it dropped our graph: it recomputes from the inputs
                    try:
                        return self.transport.backward(self.peer, self.header, grads, self.inputs, self.timeout_s)
                    except Exception as again:
                        exc = again
                logger.warning(
                    "backward failed on the forward's replica; recomputing elsewhere",
                    extra={"shard": self.shard, "peer": self.peer, "why": str(exc)[:300]},
                )
                if not is_nested_failure(exc):
                    for record in self.router.replicas(self.shard):
                        if record.peer == self.peer:
                            self.router.ban(self.shard, record)
        # Another replica, or the same one if it is all there is, with the inputs to recompute the forward.
        _, result = self._attempt("backward", set(), grads, self.inputs)
        return result


# A leaf that requires grad, passed to every remote call: autograd then tracks outputs even when no real input
# needs a gradient (stage 0 takes token ids), so backward reaches the remote shard's parameters.
_DUMMY = torch.empty(0, requires_grad=True)


class _RemoteFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, call: ShardCall, dummy: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.call = call
        ctx.float_inputs = [x.is_floating_point() for x in inputs]
        return tuple(call.forward(inputs))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_inputs = ctx.call.backward([g.contiguous() for g in grads])
        grads = [g if is_float else None for g, is_float in zip(grad_inputs, ctx.float_inputs, strict=True)]
        return (None, None, *grads)


def remote_call(call: ShardCall, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Run `call` on `inputs` as a differentiable operation."""
    return _RemoteFunction.apply(call, _DUMMY, *inputs)

"""The shard server: forward, backward, info and inspect RPCs over hivemind.p2p for the shards a worker hosts.

Handlers are registered on the worker's p2pd under the namespace of the run, so two runs never mix. Compute runs on
an executor (never on the event loop). A peer that sends a malformed request (wrong shapes or dtypes, NaN/Inf) is
refused and banned for `ban_s` seconds: its later requests are refused at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

# typing.AsyncIterator, not collections.abc's: hivemind's ServicerBase detects streaming RPCs by the typing alias.
from typing import Any, AsyncIterator  # noqa: UP035

import torch
from hivemind.p2p import P2PContext, ServicerBase
from hivemind.proto import runtime_pb2
from hivemind.utils.serializer import MSGPackSerializer

from zoo_node.errors import ZooError
from zoo_node.worker.runtime import ShardRuntime
from zoo_node.worker.wire import BadTensorError, decode, decode_stream, encode_response, single_response

logger = logging.getLogger(__name__)


class PeerBanned(ZooError):
    """This server refuses requests from the calling peer for a while (it sent malformed tensors)."""


class UnknownShard(ZooError):
    """The request names a shard this worker does not serve."""


class ShardServicer(ServicerBase):
    """Serves every `ShardRuntime` of one worker."""

    def __init__(self, runtimes: dict[str, ShardRuntime], *, ban_s: float = 60.0, call_timeout_s: float = 60.0):
        self.runtimes = runtimes
        self.ban_s = ban_s
        self.call_timeout_s = call_timeout_s
        self.banned: dict[str, float] = {}
        self.refused = 0
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="shard")

    def _runtime(self, header: dict[str, Any], context: P2PContext) -> ShardRuntime:
        peer = context.remote_id.to_base58()
        until = self.banned.get(peer, 0.0)
        if until > time.monotonic():
            raise PeerBanned(f"peer {peer} is banned for {until - time.monotonic():.0f} s more (malformed tensors)")
        shard = header.get("shard")
        if shard not in self.runtimes:
            raise UnknownShard(f"shard {shard!r} is not served here (serving {sorted(self.runtimes)})")
        return self.runtimes[shard]

    def _key(self, header: dict[str, Any], context: P2PContext) -> str:
        return f"{context.remote_id.to_base58()}/{header.get('key')}"

    async def _run(self, context: P2PContext, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        except (BadTensorError, ValueError, RuntimeError) as exc:
            # Bad input (caught by the checks, or by torch on mismatched shapes): refuse and ban the sender.
            peer = context.remote_id.to_base58()
            self.banned[peer] = time.monotonic() + self.ban_s
            self.refused += 1
            logger.warning(
                "refused a malformed request; peer banned", extra={"peer": peer, "why": str(exc)}, exc_info=True
            )
            raise BadTensorError(f"refused: {exc}") from None

    async def _forward(self, inputs: list, header: dict[str, Any], context: P2PContext) -> tuple[list, str]:
        runtime = self._runtime(header, context)
        outputs = await self._run(
            context, runtime.forward, self._key(header, context), inputs, header, timeout=self.call_timeout_s
        )
        return outputs, runtime.name

    async def _backward(self, tensors: list, header: dict[str, Any], context: P2PContext) -> tuple[list, str]:
        runtime = self._runtime(header, context)
        n_grads = int(header.get("n_grads", len(tensors)))
        grads, inputs = tensors[:n_grads], (tensors[n_grads:] or None)
        result = await self._run(
            context,
            runtime.backward,
            self._key(header, context),
            grads,
            header,
            inputs=inputs,
            timeout=self.call_timeout_s,
        )
        return result, runtime.name

    # Unary RPCs for messages that fit in one p2pd message (they reuse p2pd's persistent connection: several times
    # faster than a stream); the *_stream RPCs for larger ones.
    async def rpc_forward(self, request: runtime_pb2.ExpertRequest, context: P2PContext) -> runtime_pb2.ExpertResponse:
        outputs, name = await self._forward(*decode([request]), context)
        return single_response(outputs, {"shard": name})

    async def rpc_backward(self, request: runtime_pb2.ExpertRequest, context: P2PContext) -> runtime_pb2.ExpertResponse:
        grads, name = await self._backward(*decode([request]), context)
        return single_response(grads, {"shard": name})

    async def rpc_forward_stream(
        self, requests: AsyncIterator[runtime_pb2.ExpertRequest], context: P2PContext
    ) -> AsyncIterator[runtime_pb2.ExpertResponse]:
        outputs, name = await self._forward(*await decode_stream(requests), context)
        for message in encode_response(outputs, {"shard": name}):
            yield message

    async def rpc_backward_stream(
        self, requests: AsyncIterator[runtime_pb2.ExpertRequest], context: P2PContext
    ) -> AsyncIterator[runtime_pb2.ExpertResponse]:
        grads, name = await self._backward(*await decode_stream(requests), context)
        for message in encode_response(grads, {"shard": name}):
            yield message

    async def rpc_info(self, request: runtime_pb2.ExpertUID, context: P2PContext) -> runtime_pb2.ExpertInfo:
        info = {
            name: {"tokens_per_s": rt.throughput.tokens_per_s, "pending": rt.pending, "evicted": rt.evicted}
            for name, rt in self.runtimes.items()
        }
        return runtime_pb2.ExpertInfo(serialized_info=MSGPackSerializer.dumps(info))

    async def rpc_inspect(
        self, request: runtime_pb2.ExpertUID, context: P2PContext
    ) -> AsyncIterator[runtime_pb2.ExpertResponse]:
        """A shard's parameters and accumulated gradients (for tests and `zoo-node worker` diagnostics)."""
        runtime = self._runtime({"shard": request.uid}, context)
        names, tensors = [], []
        for name, param in runtime.backend.module.named_parameters():
            names.append(name)
            tensors.append(param.detach().clone())
            tensors.append(param.grad.detach().clone() if param.grad is not None else torch.zeros_like(param))
        for message in encode_response(tensors, {"names": names}):
            yield message

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

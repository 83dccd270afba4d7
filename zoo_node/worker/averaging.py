"""Gradient averaging between the replicas of one shard, on hivemind's `GradientAverager` (or its PowerSGD variant).

What this adds to hivemind:
- every tensor part a groupmate sends is checked before it is summed: the right size, finite values, a finite
  non-negative weight. A bad part raises inside hivemind's reducer, which bans that sender for the round and averages
  the others without it (`TensorPartReducer.on_sender_failed`). Our own bad part is left out (weight 0) so that we
  still reduce the others' parts. Averages that come back non-finite are dropped (the local value stays), so one
  bad peer cannot poison the others;
- every member ends the round with bit-identical averages. hivemind's reducer sends each peer the compressed delta
  `average - its part`, so with lossy compression every peer adds a different rounding error to a different local
  value; Adam turns that into replicas drifting apart by a good part of lr per round on the elements whose gradient
  is ~0 (measured: 2.3% of an expert tensor's norm after 31 rounds of fp16). Here the reducer sends the compressed
  average itself and rounds its own part through the same compression, so replicas that start equal stay equal;
- hivemind's 8-bit codecs read their codebook size with `int(np.frombuffer(..., count=1))`, which NumPy 2.4 refuses
  (a 1-d array is not a scalar); a part that cannot be read counts as a failed reducer, so under 8-bit compression
  nothing was averaged, silently. `_register_numpy2_codecs` puts fixed codecs under the same wire types;
- the averager's shared state (for a late joiner's `load_state_from_peers`) is the shard's parameters and optimizer
  statistics, provided by the worker through `state_provider`, not the gradient buffers.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing as mp
import signal
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from hivemind.averaging.allreduce import AllReduceRunner
from hivemind.averaging.partition import BannedException
from hivemind.compression import (
    CompressionBase,
    NoCompression,
    Quantile8BitQuantization,
    ScaledFloat16Compression,
    Uniform8BitQuantization,
    deserialize_torch_tensor,
    serialization,
    serialize_torch_tensor,
)
from hivemind.optim.grad_averager import GradientAverager
from hivemind.optim.power_sgd_averager import PowerSGDGradientAverager
from hivemind.p2p import PeerID
from hivemind.proto import averaging_pb2, runtime_pb2
from hivemind.utils.asyncio import amap_in_executor, as_aiter, azip
from hivemind.utils.timed_storage import get_dht_time

logger = logging.getLogger(__name__)


class _Numpy2Extract:
    """`extract` of hivemind's 8-bit codecs, reading the codebook size as a scalar (NumPy >= 2 refuses `int(array)`)."""

    codebook_dtype: Any
    indices_dtype: Any

    def extract(self, serialized_tensor: Any) -> torch.Tensor:
        buffer = serialized_tensor.buffer
        size = int(np.frombuffer(buffer, count=1, dtype=np.int64)[0])
        codebook = np.frombuffer(buffer, offset=8, count=size, dtype=self.codebook_dtype)
        indices = np.frombuffer(buffer, offset=8 + codebook.nbytes, dtype=self.indices_dtype)
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(tuple(serialized_tensor.size))
        values = torch.as_tensor(codebook).to(dtype=getattr(torch, serialized_tensor.dtype))
        return values[indices].requires_grad_(serialized_tensor.requires_grad)


class Uniform8Bit(_Numpy2Extract, Uniform8BitQuantization):
    """hivemind's uniform 8-bit quantization, readable under NumPy 2."""


class Quantile8Bit(_Numpy2Extract, Quantile8BitQuantization):
    """hivemind's quantile 8-bit quantization, readable under NumPy 2."""


def _register_numpy2_codecs() -> None:
    # Deserialization looks codecs up by wire type in this table, in every process that reads a part.
    for codec in (Uniform8Bit(), Quantile8Bit()):
        serialization._BASE_COMPRESSION_TYPES[runtime_pb2.CompressionType.Name(codec.compression_type)] = codec


_register_numpy2_codecs()

COMPRESSIONS: dict[str, Callable[[], CompressionBase]] = {
    "none": NoCompression,
    # fp16 after per-tensor mean/std scaling: plain fp16 turns gradients of ~1e-6 into subnormals (1% error, which
    # Adam's normalisation turns into replicas drifting apart by a fair part of lr per round).
    "fp16": ScaledFloat16Compression,
    "uniform8bit": Uniform8Bit,
    "quantile8bit": Quantile8Bit,
    "powersgd": ScaledFloat16Compression,  # PowerSGD's factors travel in (scaled) fp16
}

StateProvider = Callable[[], tuple[dict[str, Any], Sequence[torch.Tensor]]]


class RefusedContribution(ValueError):
    """A groupmate's tensor part or weight failed the checks; hivemind bans the sender for this round."""


def check_part(part: torch.Tensor, expected: torch.Size, weight: float) -> None:
    """Refuse a part of the wrong size, with NaN/Inf, or with a weight that is negative or not finite."""
    if part.shape != expected:
        raise RefusedContribution(f"tensor part of shape {tuple(part.shape)}, expected {tuple(expected)}")
    if not bool(torch.isfinite(part).all()):
        raise RefusedContribution("tensor part contains NaN or Inf")
    if not (weight >= 0 and weight < float("inf")):
        raise RefusedContribution(f"averaging weight {weight} is negative or not finite")


class CheckedAllReduceRunner(AllReduceRunner):
    """hivemind's butterfly all-reduce, with every incoming part checked before it is accumulated, and the compressed
    average (not a delta) sent back, so that every member gets the same bits. Yields averaged tensors, not deltas."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        container = self.tensor_part_container
        container.return_deltas = False  # a reducer that fails leaves our local part in place
        self.failed_reducers: list[str] = []
        register_failed = container.register_failed_reducer

        def note_failed_reducer(peer_index: int) -> None:
            # hivemind goes on without that peer's parts: they keep our local values, so replicas now differ there.
            self.failed_reducers.append(str(self.ordered_peer_ids[peer_index]))
            logger.warning("a reducer failed; its parts keep local values", extra={"peer": self.failed_reducers[-1]})
            register_failed(peer_index)

        container.register_failed_reducer = note_failed_reducer
        self.wire_type = container.compression.compression_type
        reducer = self.tensor_part_reducer
        accumulate = reducer.accumulate_part
        self.refused: list[str] = []

        async def checked_accumulate(sender_index: int, part_index: int, part: torch.Tensor, weight: float = 1.0):
            try:
                check_part(part, reducer.part_shapes[part_index], weight)
            except RefusedContribution as exc:
                peer = self.sender_peer_ids[sender_index]
                if peer == self.peer_id:  # our own gradients blew up: take no part, but keep reducing for the others
                    logger.warning("left our own non-finite contribution out", extra={"why": str(exc)})
                    shape = reducer.part_shapes[part_index]
                    return await accumulate(sender_index, part_index, torch.zeros(shape), weight=0.0)
                self.refused.append(f"{peer}: {exc}")
                logger.warning("refused a contribution to averaging", extra={"peer": str(peer), "why": str(exc)})
                raise
            return await accumulate(sender_index, part_index, part, weight=weight)

        reducer.accumulate_part = checked_accumulate

    def _on_wire(self, averaged: torch.Tensor) -> Any:
        return serialize_torch_tensor(averaged, self.wire_type)

    async def _communicate_with_peer(self, peer_id: PeerID) -> None:
        if peer_id != self.peer_id:  # the others' replies are deserialized as they come: already the wire's bits
            return await super()._communicate_with_peer(peer_id)
        # Our own part: average it, then round it through the wire compression the others receive it with.
        peer_index = self.ordered_peer_ids.index(peer_id)
        sender_index = self.sender_peer_ids.index(peer_id)
        for part_index, part in enumerate(self.parts_for_local_averaging):
            reducer = self.tensor_part_reducer
            averaged = await reducer.accumulate_part(sender_index, part_index, part, weight=self.weight)
            rounded = deserialize_torch_tensor(self._on_wire(averaged))
            self.tensor_part_container.register_processed_part(peer_index, part_index, rounded)

    async def _accumulate_parts_streaming(self, stream, sender_index: int):
        """Reduce a groupmate's parts as they arrive; answer each with the compressed average of that part."""
        received = 0
        loop = asyncio.get_running_loop()
        try:
            parts = amap_in_executor(
                lambda msg: (deserialize_torch_tensor(msg.tensor_part), msg.weight),
                stream,
                max_prefetch=self.tensor_part_container.prefetch,
            )
            async for part, weight in parts:
                try:
                    averaged = await self.tensor_part_reducer.accumulate_part(
                        sender_index, received, part, weight=weight
                    )
                except BannedException:
                    break  # banned meanwhile: nothing more of theirs is reduced
                received += 1
                serialized = await loop.run_in_executor(None, self._on_wire, averaged)
                yield averaging_pb2.AveragingData(code=averaging_pb2.AVERAGED_PART, tensor_part=serialized)
        finally:
            if received != self.tensor_part_reducer.num_parts:
                await self._ban_sender(self.sender_peer_ids[sender_index])


class _CheckedAveraging:
    """Mixin for a hivemind averager: checked all-reduce, and the shard's state for joiners."""

    state_provider: StateProvider | None = None
    #: rounds in which a reducer failed (some parts kept local values); shared with the averager's own process
    partial_rounds: Any = None

    def run(self) -> None:
        # The averager's own process. It is forked from the worker, from whichever thread took the shard (a move
        # takes one from the rebalancing thread) and with whatever handlers the worker had then: Ctrl-C is the
        # worker's to handle, SIGTERM ends this process. (hivemind's run_in_background sets SIGINT to ignored in
        # the parent instead, which only the main thread may do.)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        super().run()

    async def _run_allreduce_inplace_(self, tensors, group_info, group_id=None, **kwargs) -> None:
        group_id = group_info.group_id if group_id is None else group_id
        runner = CheckedAllReduceRunner(
            p2p=self._p2p,
            servicer_type=type(self),
            prefix=self.prefix,
            tensors=tensors,
            group_id=group_id,
            ordered_peer_ids=group_info.peer_ids,
            **kwargs,
        )
        self._running_groups[group_id].set_result(runner)
        written = 0
        try:
            async for tensor, averaged in azip(as_aiter(*tensors), runner):
                if not bool(torch.isfinite(averaged).all()):  # a reducer sent back garbage: keep our own value
                    logger.warning("dropped a non-finite averaged tensor from the group")
                elif self._averaging_alpha == 1.0:
                    tensor.copy_(averaged)
                else:
                    tensor.lerp_(averaged.to(tensor.dtype), self._averaging_alpha)
                written += 1
        finally:
            # Partial: some parts kept local values, or the attempt broke off with some tensors already averaged
            # (hivemind then retries on those). Either way this member's result may differ from its groupmates'.
            broken_off = 0 < written < len(tensors)
            if (runner.failed_reducers or broken_off) and self.partial_rounds is not None:
                with self.partial_rounds.get_lock():
                    self.partial_rounds.value += 1
        self.last_updated = get_dht_time()
        self._state_updated.set()

    def get_current_state(self):
        if self.state_provider is None:
            return super().get_current_state()
        metadata, tensors = self.state_provider()
        return metadata, list(tensors), None


class ShardGradientAverager(_CheckedAveraging, GradientAverager):
    """Averages a shard's accumulated gradients (in `.grad`) with its replicas."""


class ShardPowerSGDAverager(_CheckedAveraging, PowerSGDGradientAverager):
    """The same, with PowerSGD low-rank compression (error feedback kept locally)."""


def make_averager(
    parameters: Sequence[torch.nn.Parameter],
    *,
    dht: Any,
    prefix: str,
    compression: str,
    powersgd_rank: int,
    matchmaking_time_s: float,
    averaging_timeout_s: float,
    client_mode: bool,
    state_provider: StateProvider,
) -> GradientAverager:
    """A started averager for one shard (its own process, sharing the worker's p2pd through the DHT)."""
    kwargs: dict[str, Any] = dict(
        dht=dht,
        prefix=prefix,
        reuse_grad_buffers=True,  # backward accumulates into .grad; the averager reads and zeroes it
        client_mode=client_mode,
        min_matchmaking_time=matchmaking_time_s,
        request_timeout=matchmaking_time_s / 2,
        allreduce_timeout=averaging_timeout_s,
        next_chunk_timeout=averaging_timeout_s / 2,
        compression=COMPRESSIONS[compression](),
        state_compression=NoCompression(),  # a joiner gets the exact parameters
        min_group_size=2,
        warn=False,
        start=False,
    )
    cls: type = ShardGradientAverager
    if compression == "powersgd":
        cls = ShardPowerSGDAverager
        kwargs["averager_rank"] = powersgd_rank
    averager = cls(parameters, **kwargs)
    averager.state_provider = state_provider
    averager.partial_rounds = mp.Value(ctypes.c_int, 0)  # before the averager's process forks
    averager.start()  # not run_in_background: see `_CheckedAveraging.run`
    averager.wait_until_ready()
    return averager

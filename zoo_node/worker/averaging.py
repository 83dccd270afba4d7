"""Gradient averaging between the replicas of one shard, on hivemind's `GradientAverager` (or its PowerSGD variant).

What this adds to hivemind:
- every tensor part a groupmate sends is checked before it is summed: the right size, finite values, a finite
  non-negative weight. A bad part raises inside hivemind's reducer, which bans that sender for the round and averages
  the others without it (`TensorPartReducer.on_sender_failed`). Our own bad part is left out (weight 0) so that we
  still reduce the others' parts. Averaged deltas that come back non-finite are dropped (the local value stays), so
  one bad peer cannot poison the others;
- the averager's shared state (for a late joiner's `load_state_from_peers`) is the shard's parameters and optimizer
  statistics, provided by the worker through `state_provider`, not the gradient buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from hivemind.averaging.allreduce import AllReduceRunner
from hivemind.compression import (
    CompressionBase,
    NoCompression,
    Quantile8BitQuantization,
    ScaledFloat16Compression,
    Uniform8BitQuantization,
)
from hivemind.optim.grad_averager import GradientAverager
from hivemind.optim.power_sgd_averager import PowerSGDGradientAverager
from hivemind.utils.asyncio import as_aiter, azip
from hivemind.utils.timed_storage import get_dht_time

logger = logging.getLogger(__name__)

COMPRESSIONS: dict[str, Callable[[], CompressionBase]] = {
    "none": NoCompression,
    # fp16 after per-tensor mean/std scaling: plain fp16 turns gradients of ~1e-6 into subnormals (1% error, which
    # Adam's normalisation turns into replicas drifting apart by a fair part of lr per round).
    "fp16": ScaledFloat16Compression,
    "uniform8bit": Uniform8BitQuantization,
    "quantile8bit": Quantile8BitQuantization,
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
    """hivemind's butterfly all-reduce, with every incoming part checked before it is accumulated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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


class _CheckedAveraging:
    """Mixin for a hivemind averager: checked all-reduce, and the shard's state for joiners."""

    state_provider: StateProvider | None = None

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
        async for tensor, delta in azip(as_aiter(*tensors), runner):
            if bool(torch.isfinite(delta).all()):
                tensor.add_(delta, alpha=self._averaging_alpha)
            else:  # a reducer sent back garbage: keep our own value for this tensor
                logger.warning("dropped a non-finite averaged tensor from the group")
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
    averager.run_in_background(await_ready=True)
    return averager

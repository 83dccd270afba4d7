"""The model's shards as the runtime serves them: `StageBackend` (a `StageShard`) and `ExpertBackend` (an
`ExpertGroup`), with the checks every request passes and the work (tokens, FLOPs) each call counts.

A stage reaches its expert groups through `dispatcher`, which the worker builds to call the groups wherever they are
served (`remote_call`), tagged with the micro-batch the stage is working on (a thread-local: several micro-batches
may be in flight on one stage, each on its own executor thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from zoo_node.runspec import RunSpec
from zoo_node.worker.wire import BadTensorError, TensorCheck

# (shard name, header of the stage's call, rows, expert ids, layer) -> expert outputs
GroupCaller = Callable[[str, dict[str, Any], int, torch.Tensor, torch.Tensor], torch.Tensor]


def model_parts(spec: RunSpec) -> tuple[Any, Any]:
    """(Zen3Config, Partition) of a run: the preset, cut evenly into the spec's stages and expert groups."""
    from zoo_node.model import Partition, get_preset

    config = get_preset(spec.model)
    groups = spec.partition.expert_groups if config.is_moe else 1
    partition = Partition.even(config, spec.partition.stages, groups)
    partition.validate(config)
    return config, partition


def shard_names(spec: RunSpec) -> list[str]:
    """Every shard of the run, in the partition's order."""
    config, partition = model_parts(spec)
    return [s.name for s in partition.shards(config)]


def _expert_flops_per_row(config: Any) -> float:
    # SwiGLU expert: three D x F matmuls, 2 FLOPs per multiply-add, x3 for forward + backward.
    return 6.0 * 3 * config.d_model * config.expert_ffn_dim


class StageBackend:
    """Pipeline stage `stage/<s>`: inputs (tokens | hidden[, targets]), outputs (hidden | loss, aux)."""

    def __init__(self, spec: RunSpec, stage: int, call_group: GroupCaller | None) -> None:
        from zoo_node.model import StageShard, flops_per_token

        self.config, self.partition = model_parts(spec)
        self.stage = stage
        self.name = f"stage/{stage}"
        self.seq_len = spec.data.seq_len
        self._local = threading.local()
        self.module = StageShard(self.config, self.partition, stage, self._dispatch, seed=spec.model_seed)
        self.first, self.last = self.module.spec.is_first, self.module.spec.is_last
        self._call_group = call_group
        self._flops_per_token = float(flops_per_token(self.config, self.seq_len, shard=self.module.spec))

    def _dispatch(self, layer: int, group: int, rows: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
        if self._call_group is None:
            raise RuntimeError(f"{self.name}: no expert dispatcher")
        header = getattr(self._local, "header", {})
        return self._call_group(f"experts/{self.stage}/{group}", header, layer, rows, expert_ids)

    def input_checks(self, header: dict[str, Any]) -> Sequence[TensorCheck]:
        first = (
            TensorCheck("tokens", torch.int64, (None, None))
            if self.first
            else TensorCheck("hidden", torch.float32, (None, None, self.config.d_model))
        )
        return [first, TensorCheck("targets", torch.int64, (None, None))] if self.last else [first]

    def forward(self, inputs: Sequence[torch.Tensor], header: dict[str, Any]) -> list[torch.Tensor]:
        x = inputs[0]
        targets = inputs[1] if self.last else None
        batch_time = tuple(x.shape[:2])
        if targets is not None and tuple(targets.shape) != batch_time:
            raise BadTensorError(f"targets: shape {tuple(targets.shape)} does not match the inputs' {batch_time}")
        if batch_time[1] > self.config.max_seq_len:
            raise BadTensorError(f"sequence of {batch_time[1]} tokens is beyond max_seq_len {self.config.max_seq_len}")
        if self.first and x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.config.vocab_size):
            raise BadTensorError(f"tokens: ids outside 0..{self.config.vocab_size - 1}")
        self._local.header = header
        try:
            out, aux = self.module(x, targets)
        finally:
            self._local.header = {}
        return [out, aux]

    def work(self, inputs: Sequence[torch.Tensor], header: dict[str, Any]) -> tuple[int, float]:
        tokens = int(inputs[0].shape[0] * inputs[0].shape[1])
        return tokens, tokens * self._flops_per_token


class ExpertBackend:
    """Expert group `experts/<s>/<g>`: inputs (rows [n, D], expert ids [n]) and header `layer`; output rows."""

    def __init__(self, spec: RunSpec, stage: int, group: int) -> None:
        from zoo_node.model import ExpertGroup

        self.config, self.partition = model_parts(spec)
        self.name = f"experts/{stage}/{group}"
        self.module = ExpertGroup(self.config, self.partition, stage, group, seed=spec.model_seed)
        self.layers = set(self.module.spec.moe_layers)
        self._flops_per_row = _expert_flops_per_row(self.config)

    def input_checks(self, header: dict[str, Any]) -> Sequence[TensorCheck]:
        return [
            TensorCheck("rows", torch.float32, (None, self.config.d_model)),
            TensorCheck("expert_ids", torch.int64, (None,)),
        ]

    def forward(self, inputs: Sequence[torch.Tensor], header: dict[str, Any]) -> list[torch.Tensor]:
        layer = header.get("layer")
        if not isinstance(layer, int) or layer not in self.layers:
            raise BadTensorError(f"layer: {layer!r} is not a MoE layer of {self.name} ({sorted(self.layers)})")
        rows, ids = inputs
        if ids.shape[0] != rows.shape[0]:
            raise BadTensorError(f"expert_ids: {ids.shape[0]} ids for {rows.shape[0]} rows")
        return [self.module(layer, rows, ids)]

    def work(self, inputs: Sequence[torch.Tensor], header: dict[str, Any]) -> tuple[int, float]:
        rows = int(inputs[0].shape[0])
        return rows, rows * self._flops_per_row


def build_backend(spec: RunSpec, shard: str, call_group: GroupCaller | None) -> StageBackend | ExpertBackend:
    """The backend serving `shard` (`stage/<s>` or `experts/<s>/<g>`)."""
    parts = shard.split("/")
    try:
        if parts[0] == "stage" and len(parts) == 2:
            return StageBackend(spec, int(parts[1]), call_group)
        if parts[0] == "experts" and len(parts) == 3:
            return ExpertBackend(spec, int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    from zoo_node.errors import ZooError

    raise ZooError(f"shard {shard!r}: not a shard name (stage/<s> or experts/<s>/<g>)")

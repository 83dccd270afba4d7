"""Zen-3 in pure PyTorch: config and presets, YaRN RoPE, sliding-window GQA attention, top-k MoE, shards, FLOPs.

Layering: imports nothing of the network (no libp2p, hivemind, grpc, web3).

Model
    `Zen3Config` (dataclass, validated: bad values raise ValueError naming the field), `PRESETS` /
    `get_preset(name)`; `Zen3Model(config, seed=0)`: `forward(tokens, targets) -> (loss, aux)`, training objective
    `loss + aux` (`model.loss(tokens, targets)`); without targets `(logits, aux)`. Weights are a function of
    (seed, parameter name), so a shard built alone with the same seed holds the full model's weights.
    `model.expert_counts()` gives assignments per expert of the last forward; `model.update_router_biases()` applies
    the aux-loss-free bias update (when `router_bias_update_rate` > 0).

Shard API (for the data plane; full contract in `zoo_node.model.shards`)
    `Partition(stages=((0, 2), (2, 4)), expert_groups=(2, 1))`: stages as layer ranges, expert groups per stage;
    `.validate(config)` raises ValueError naming `stages` / `expert_groups`; `.shards(config)` lists
    `StageSpec` (`stage/<s>`) and `ExpertGroupSpec` (`experts/<s>/<g>`); `Partition.even(config, n, groups)`.

    `StageShard(config, partition, s, dispatcher)`: `forward(x, targets=None) -> (out, aux)`; x is token ids on
    stage 0, hidden states [B, T, D] after; the last stage returns the loss given targets. MoE layers call
    `dispatcher(layer_index, group_index, rows [n, D], expert_ids [n]) -> [n, D]` once per group that got rows
    (never with zero rows). Backward: `stage_backward(out, aux, grad_out)`, i.e.
    `torch.autograd.backward([out, aux], [grad_out, torch.ones(())])` (aux only where it requires grad).

    `ExpertGroup(config, partition, s, g)`: `forward(layer_index, rows, expert_ids) -> [n, D]`, a plain
    differentiable function of rows (unweighted expert outputs; the stage applies the gates).

    `LocalComposition(config, partition)`: the shards in one process, equal to `Zen3Model` (loss and every
    gradient); `build_shard(config, partition, "experts/0/1")`; `load_full_state_dict(shard, full_sd)`.
    Every shard's state_dict and named_parameters use the full model's names.

FLOPs
    `flops_per_token(config, seq_len, shard=None)`: PaLM appendix B, 6 * N_active_matmul + 12 * H * Q * T_eff per
    layer, T_eff = min(T, window); `shard=` a `StageSpec` or `ExpertGroupSpec`. `count_parameters(config)`
    (meta device, allocates nothing) -> total and active.
"""

from zoo_node.model.attention import causal_attention, flash_attn_available, reference_attention
from zoo_node.model.config import RopeScaling, Zen3Config
from zoo_node.model.flops import ParameterCount, count_parameters, expert_rows_flops, flops_per_token
from zoo_node.model.layers import ExpertDispatcher
from zoo_node.model.model import IGNORE_INDEX, Zen3Model, init_parameters
from zoo_node.model.partition import ExpertGroupSpec, Partition, ShardSpec, StageSpec, expert_range
from zoo_node.model.presets import ANNOUNCED_PARAMS, PRESETS, get_preset
from zoo_node.model.shards import (
    ExpertGroup,
    LocalComposition,
    StageShard,
    build_shard,
    load_full_state_dict,
    stage_backward,
)

__all__ = [
    "ANNOUNCED_PARAMS",
    "IGNORE_INDEX",
    "PRESETS",
    "ExpertDispatcher",
    "ExpertGroup",
    "ExpertGroupSpec",
    "LocalComposition",
    "ParameterCount",
    "Partition",
    "RopeScaling",
    "ShardSpec",
    "StageShard",
    "StageSpec",
    "Zen3Config",
    "Zen3Model",
    "build_shard",
    "causal_attention",
    "count_parameters",
    "expert_range",
    "expert_rows_flops",
    "flash_attn_available",
    "flops_per_token",
    "get_preset",
    "init_parameters",
    "load_full_state_dict",
    "reference_attention",
    "stage_backward",
]

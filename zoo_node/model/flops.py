"""Parameter counts and training FLOPs per token (PaLM, arXiv 2204.02311, appendix B), with active parameters and
sliding windows.

flops_per_token = 6 * N + sum over layers of 12 * H * Q * T_eff

- N: the matmul parameters one token uses: per layer the QKV and output projections, the dense FFN or the router
  plus top_k experts, and the LM head (the embedding lookup is not a matmul; norms are negligible).
- 6 = 2 (multiply-add) * 3 (forward, then backward for inputs and for weights).
- 12 * H * Q * T: the attention score and value matmuls (4 * H * Q * T forward, twice that backward) against T keys,
  counted over the full sequence as PaLM does (no halving for causality); a sliding-window layer has
  T_eff = min(T, window).

`shard=` narrows the count to one shard per token of the micro-batch the driver feeds: a stage counts its layers'
attention, dense FFNs and routers (and the head if last); an expert group counts its share of the experts under
uniform routing (k * group size / n_experts experts per token). The shards of a partition add up to the model. For
the work a group actually did, count its rows: `expert_rows_flops(config, rows)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo_node.model.config import Zen3Config
from zoo_node.model.partition import ExpertGroupSpec, StageSpec


@dataclass(frozen=True)
class ParameterCount:
    total: int  # every parameter
    active: int  # parameters one token uses (top_k of the experts)
    embedding: int  # the embedding table (and the head, when tied)

    def as_dict(self) -> dict[str, int]:
        return {"total_params": self.total, "active_params": self.active, "embedding_params": self.embedding}


def count_parameters(config: Zen3Config) -> ParameterCount:
    """Build the model on the meta device (nothing is allocated) and count its parameters."""
    from zoo_node.model.model import Zen3Model

    with torch.device("meta"):
        model = Zen3Model(config, seed=None)
    total = sum(p.numel() for p in model.parameters())
    inactive = len(config.moe_layers) * (config.n_experts - config.top_k) * _expert_params(config)
    return ParameterCount(total=total, active=total - inactive, embedding=config.vocab_size * config.d_model)


def _expert_params(config: Zen3Config) -> int:
    return 3 * config.d_model * config.expert_ffn_dim


def _attention_params(config: Zen3Config) -> int:
    q = config.n_heads * config.head_size
    kv = config.n_kv_heads * config.head_size
    return config.d_model * (q + 2 * kv) + q * config.d_model


def _trunk_matmul_params(config: Zen3Config, layer: int) -> int:
    """Per-token matmul parameters of layer `layer` outside its experts."""
    ffn = config.n_experts * config.d_model if config.is_moe_layer(layer) else 3 * config.d_model * config.ffn_dim
    return _attention_params(config) + ffn


def attention_flops_per_token(config: Zen3Config, seq_len: int, layer: int) -> int:
    """12 * H * Q * T_eff for one layer."""
    window = config.windows[layer]
    t_eff = seq_len if window is None else min(seq_len, window)
    return 12 * config.n_heads * config.head_size * t_eff


def expert_rows_flops(config: Zen3Config, rows: int) -> int:
    """Training FLOPs of `rows` token-expert rows through one expert each (forward and backward)."""
    return 6 * rows * _expert_params(config)


def flops_per_token(config: Zen3Config, seq_len: int, shard: StageSpec | ExpertGroupSpec | None = None) -> int:
    """Training (forward + backward) FLOPs per token at sequence length `seq_len`; see the module docstring."""
    if seq_len < 1:
        raise ValueError(f"seq_len: {seq_len} must be positive")
    head = config.vocab_size * config.d_model
    per_token_experts = config.top_k * _expert_params(config)
    if shard is None:
        layers = range(config.n_layers)
        params = head + sum(_trunk_matmul_params(config, i) for i in layers)
        params += len(config.moe_layers) * per_token_experts
        return 6 * params + sum(attention_flops_per_token(config, seq_len, i) for i in layers)
    if isinstance(shard, StageSpec):
        layers = shard.layers
        params = sum(_trunk_matmul_params(config, i) for i in layers) + (head if shard.is_last else 0)
        return 6 * params + sum(attention_flops_per_token(config, seq_len, i) for i in layers)
    if isinstance(shard, ExpertGroupSpec):
        n_layers = len(shard.moe_layers)
        # Under uniform routing a token sends top_k rows, each to any expert with probability 1 / n_experts.
        share = 6 * n_layers * per_token_experts * len(shard.experts)
        if share % config.n_experts:
            return round(share / config.n_experts)
        return share // config.n_experts
    raise TypeError(f"shard: expected a StageSpec or ExpertGroupSpec, got {type(shard).__name__}")

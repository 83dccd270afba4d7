"""The building blocks of a Zen-3 decoder layer: RMSNorm, GQA attention, SwiGLU FFN, the MoE layer, the block.

Parameter names (and so state_dict keys) inside layer i of the full model:
`attn_norm.weight`, `attn.wqkv.weight`, `attn.wo.weight`, `ffn_norm.weight`, then either `ffn.w_gate_up.weight`,
`ffn.w_down.weight` (dense) or `moe.router.weight`, `moe.router.selection_bias`, `moe.experts.<e>.w_gate_up.weight`,
`moe.experts.<e>.w_down.weight` (MoE).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zoo_node.model.attention import Backend, causal_attention
from zoo_node.model.config import Zen3Config
from zoo_node.model.kernels import gather_token_rows, permute_rows, rms_norm, rotary_qkv, swiglu
from zoo_node.model.moe import (
    Expert,
    ExpertBackend,
    Router,
    experts_forward,
    load_balancing_loss,
    router_z_loss,
)

ExpertDispatcher = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]
"""`(layer_index, group_index, rows [n, D], expert_ids [n]) -> [n, D]`: run expert group `group_index` of MoE layer
`layer_index` on `rows`; `expert_ids` holds each row's (global) expert, sorted ascending, all inside the group. The
result must be differentiable with respect to `rows` (and the group's parameters): row r is expert_ids[r] applied to
rows[r], unweighted (the caller applies the gates)."""


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    """Grouped-query attention with rotary positions and the layer's sliding window (None: full)."""

    def __init__(self, config: Zen3Config, window: int | None) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_size
        self.window = window
        self.backend: Backend = "auto"
        qkv_width = (config.n_heads + 2 * config.n_kv_heads) * self.head_dim
        self.wqkv = nn.Linear(config.d_model, qkv_width, bias=False)
        self.wo = nn.Linear(config.n_heads * self.head_dim, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = rotary_qkv(self.wqkv(x).view(B, T, H + 2 * KV, D), cos, sin, H, KV)
        out = causal_attention(q, k, v, self.window, self.backend)
        return self.wo(out.reshape(B, T, H * D))


class FeedForward(nn.Module):
    """Dense SwiGLU FFN."""

    def __init__(self, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.w_gate_up = nn.Linear(d_model, 2 * ffn_dim, bias=False)
        self.w_down = nn.Linear(ffn_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(swiglu(self.w_gate_up(x)))


class MoELayer(nn.Module):
    """Router plus experts. With `experts=False` (a pipeline stage) the experts live in expert groups elsewhere and
    are reached through `dispatcher`, one call per group that received tokens."""

    def __init__(self, config: Zen3Config, layer_index: int, experts: bool = True) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.aux_loss_coef = config.router_aux_loss_coef
        self.z_loss_coef = config.router_z_loss_coef
        self.router = Router(config.d_model, config.n_experts, config.top_k)
        self.experts = (
            nn.ModuleList(Expert(config.d_model, config.expert_ffn_dim) for _ in range(config.n_experts))
            if experts
            else None
        )
        self.expert_backend: ExpertBackend = "auto"
        self.dispatcher: ExpertDispatcher | None = None
        self.group_bounds: list[tuple[int, int]] = []  # expert range [lo, hi) of each group, set with dispatcher
        self.last_counts: torch.Tensor | None = None  # assignments per expert in the last forward (metrics)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        routing = self.router(flat)
        self.last_counts = routing.counts
        n_tokens, k = routing.experts.shape
        # Assignments in token-major order (token t owns t*k .. t*k+k-1), sorted by expert (stable: by token within
        # an expert); `inverse` maps an assignment to its sorted position. Both directions are gathers.
        assigned = routing.experts.flatten()
        order = torch.argsort(assigned, stable=True)
        inverse = torch.empty_like(order).index_copy_(0, order, torch.arange(order.numel(), device=order.device))
        expert_ids = assigned.index_select(0, order)
        rows = gather_token_rows(flat, order, inverse, k)
        counts = routing.counts.tolist()  # one device sync per layer: the slices' lengths must be known
        if self.dispatcher is None:
            if self.experts is None:
                raise RuntimeError(f"MoE layer {self.layer_index} has no experts and no dispatcher")
            y = experts_forward(rows, list(self.experts), counts, self.expert_backend)
        else:
            y = self._dispatch(rows, expert_ids, counts)
        per_token = permute_rows(y, inverse, order).view(n_tokens, k, -1)
        combined = (per_token * routing.gates.to(y.dtype)[:, :, None]).sum(1)
        aux = self.aux_loss_coef * load_balancing_loss(routing) + self.z_loss_coef * router_z_loss(routing)
        return combined.view(shape), aux

    def _dispatch(self, rows: torch.Tensor, expert_ids: torch.Tensor, counts: list[int]) -> torch.Tensor:
        assert self.dispatcher is not None
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        parts = []
        for group, (lo, hi) in enumerate(self.group_bounds):
            a, b = offsets[lo], offsets[hi]
            if b > a:  # a group with no tokens is not called (a remote call with an empty batch can hang)
                out = self.dispatcher(self.layer_index, group, rows[a:b], expert_ids[a:b])
                if out.shape != (b - a, rows.shape[1]):
                    raise RuntimeError(
                        f"expert group {group} of layer {self.layer_index} returned shape {tuple(out.shape)}, "
                        f"expected {(b - a, rows.shape[1])}"
                    )
                parts.append(out)
        return torch.cat(parts)


class Block(nn.Module):
    """Pre-norm decoder layer: x + attn(norm(x)), then + ffn(norm(x)) or + moe(norm(x))."""

    def __init__(self, config: Zen3Config, layer_index: int, experts: bool = True) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config, config.windows[layer_index])
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        if config.is_moe_layer(layer_index):
            self.moe = MoELayer(config, layer_index, experts=experts)
        else:
            self.ffn = FeedForward(config.d_model, config.ffn_dim)

    @property
    def is_moe(self) -> bool:
        return hasattr(self, "moe")

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        if self.is_moe:
            y, aux = self.moe(self.ffn_norm(x))
            return x + y, aux
        return x + self.ffn(self.ffn_norm(x)), None

"""The Zen-3 trunk (embedding, layers, final norm, head, loss) and the full single-process model.

`Trunk` runs a contiguous range of layers; the full model is the trunk of all layers with its experts inside, and a
pipeline stage (`zoo_node.model.shards.StageShard`) is the trunk of its layer range with experts reached through a
dispatcher. Both name their parameters as the full model does, so state_dicts line up.

Parameter initialisation is a function of (seed, parameter name) only: a shard built on its own with seed s holds
exactly the weights the full model built with seed s holds under the same names.
"""

from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from zoo_node.model.attention import BACKENDS, Backend
from zoo_node.model.config import Zen3Config
from zoo_node.model.layers import Block, MoELayer, RMSNorm
from zoo_node.model.moe import ExpertBackend
from zoo_node.model.rope import RotaryEmbedding

IGNORE_INDEX = -100


class Trunk(nn.Module):
    """Layers [start, stop) of a Zen-3 model, plus the embedding if first and the norm and head if last."""

    def __init__(
        self,
        config: Zen3Config,
        start: int,
        stop: int,
        *,
        first: bool,
        last: bool,
        experts: bool,
        seed: int | None = 0,
        attention_backend: Backend = "auto",
        expert_backend: ExpertBackend = "auto",
    ) -> None:
        super().__init__()
        self.config = config
        self.start, self.stop = start, stop
        self.first, self.last = first, last
        if first:
            self.embed = nn.Embedding(config.vocab_size, config.d_model)
        # A ModuleDict keyed by the global layer index names parameters `layers.<i>.…` exactly as the full model.
        self.layers = nn.ModuleDict({str(i): Block(config, i, experts=experts) for i in range(start, stop)})
        if last:
            self.norm = RMSNorm(config.d_model, config.norm_eps)
            if not config.tie_embeddings:
                self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.rotary = RotaryEmbedding(config.head_size, config.rope_theta, config.rope_scaling)
        self.set_backends(attention_backend, expert_backend)
        if seed is not None and not any(p.is_meta for p in self.parameters()):
            init_parameters(self, config, seed)

    def set_backends(self, attention: Backend = "auto", experts: ExpertBackend = "auto") -> None:
        """Choose the attention kernel and the expert computation (see attention.py and moe.py)."""
        if attention not in BACKENDS:
            raise ValueError(f"attention_backend: {attention!r} is not one of {', '.join(BACKENDS)}")
        if experts not in ("auto", "grouped_mm", "loop"):
            raise ValueError(f"expert_backend: {experts!r} is not one of auto, grouped_mm, loop")
        for block in self.blocks():
            block.attn.backend = attention
            if block.is_moe:
                block.moe.expert_backend = experts

    def blocks(self) -> list[Block]:
        return list(self.layers.values())  # type: ignore[arg-type]

    def moe_layers(self) -> list[MoELayer]:
        return [b.moe for b in self.blocks() if b.is_moe]

    def run(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, T] (first) or hidden states [B, T, D] in; hidden states, logits or the loss out, plus the
        summed auxiliary loss of this range's MoE layers (a 0-dim fp32 tensor, zero without MoE layers)."""
        if self.first:
            if x.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"the first stage takes token ids, got a {x.dtype} tensor")
            x = self.embed(x)
        seq_len = x.shape[1]
        if seq_len > self.config.max_seq_len:
            raise ValueError(f"seq_len: {seq_len} tokens exceed max_seq_len {self.config.max_seq_len}")
        cos, sin = self.rotary(seq_len, x.device, x.dtype)
        aux = torch.zeros((), device=x.device, dtype=torch.float32)
        for block in self.blocks():
            x, layer_aux = block(x, cos, sin)
            if layer_aux is not None:
                aux = aux + layer_aux
        if not self.last:
            return x, aux
        logits = self.logits(x)
        if targets is None:
            return logits, aux
        loss = F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return loss, aux

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(hidden)
        head = self.embed.weight if self.config.tie_embeddings else self.lm_head.weight
        return F.linear(h, head)

    def expert_counts(self) -> dict[int, torch.Tensor]:
        """Token-expert assignments per expert in the last forward, by MoE layer index (for metrics)."""
        return {m.layer_index: m.last_counts for m in self.moe_layers() if m.last_counts is not None}

    def update_router_biases(self) -> None:
        """Apply DeepSeek-V3's aux-loss-free bias update from the loads seen since the last call (call per step)."""
        for m in self.moe_layers():
            m.router.update_selection_bias(self.config.router_bias_update_rate)


class Zen3Model(Trunk):
    """The full model in one process: `forward(tokens, targets)` -> (mean cross-entropy, auxiliary loss);
    without targets -> (logits, auxiliary loss). The training objective is their sum."""

    def __init__(
        self,
        config: Zen3Config,
        *,
        seed: int | None = 0,
        attention_backend: Backend = "auto",
        expert_backend: ExpertBackend = "auto",
    ) -> None:
        super().__init__(
            config,
            0,
            config.n_layers,
            first=True,
            last=True,
            experts=True,
            seed=seed,
            attention_backend=attention_backend,
            expert_backend=expert_backend,
        )

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.run(tokens, targets)

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective: cross-entropy plus the auxiliary (balancing and z) losses."""
        lm, aux = self.run(tokens, targets)
        return lm + aux


def init_parameters(module: nn.Module, config: Zen3Config, seed: int) -> None:
    """Initialise every parameter from (seed, its name): norms to one, the rest N(0, init_std), with the residual
    output projections (`attn.wo`, `w_down`) scaled by 1/sqrt(2 * n_layers) (GPT-2). Buffers are reset to zero."""
    out_std = config.init_std / math.sqrt(2 * config.n_layers)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
                continue
            std = out_std if name.endswith(("attn.wo.weight", "w_down.weight")) else config.init_std
            gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * std)
        for name, buf in module.named_buffers():
            if name.endswith("selection_bias"):
                buf.zero_()

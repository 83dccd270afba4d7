"""Top-k mixture of SwiGLU experts: the router, its balancing losses, and dropless expert computation.

Routing (per token): p = softmax(x W_r^T) in fp32; the top-k experts by p + b (b: the aux-loss-free selection bias of
DeepSeek-V3, zero unless `router_bias_update_rate` > 0; it steers selection only, never the gate values); gates = the
chosen p renormalised to sum to 1.

Losses, each multiplied by its coefficient in the config and summed into the layer's auxiliary loss:
- load balancing (Switch Transformer, generalised to top-k): E * sum_e f_e * P_e, with f_e the fraction of the
  N*k token-expert assignments that went to expert e and P_e the mean router probability of e; 1.0 when balanced;
- router z-loss (ST-MoE): mean over tokens of logsumexp(logits)^2.

Experts are computed dropless: every token-expert assignment becomes one row, rows are sorted by expert, and each
expert multiplies its contiguous slice (`grouped_mm` in one call where torch has it for the dtype and device, else a
loop over experts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo_node.model.kernels import swiglu

ExpertBackend = Literal["auto", "grouped_mm", "loop"]


@dataclass
class Routing:
    """One MoE layer's routing of N tokens."""

    logits: torch.Tensor  # [N, E] fp32
    probs: torch.Tensor  # [N, E] fp32
    experts: torch.Tensor  # [N, k] int64, chosen experts
    gates: torch.Tensor  # [N, k] fp32, renormalised probabilities of the chosen experts
    counts: torch.Tensor  # [E] int64, assignments per expert (detached)


class Router(nn.Module):
    """Linear router with softmax, top-k, renormalised gates and an optional selection bias (aux-loss-free)."""

    def __init__(self, d_model: int, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.top_k = top_k
        self.weight = nn.Parameter(torch.empty(n_experts, d_model))
        # Persistent: replicas average it and checkpoints keep it, like a parameter that is not trained by gradient.
        self.register_buffer("selection_bias", torch.zeros(n_experts))
        # Assignments per expert since the last bias update (not saved).
        self.register_buffer("load", torch.zeros(n_experts), persistent=False)

    def forward(self, x: torch.Tensor) -> Routing:
        logits = F.linear(x, self.weight).float()
        probs = logits.softmax(dim=-1)
        with torch.no_grad():
            experts = (probs + self.selection_bias).topk(self.top_k, dim=-1).indices
            counts = torch.bincount(experts.flatten(), minlength=self.n_experts)
            if self.training:
                self.load += counts
        chosen = probs.gather(-1, experts)
        gates = chosen / chosen.sum(dim=-1, keepdim=True)
        return Routing(logits=logits, probs=probs, experts=experts, gates=gates, counts=counts)

    @torch.no_grad()
    def update_selection_bias(self, rate: float) -> None:
        """DeepSeek-V3's aux-loss-free balancing: raise the bias of under-loaded experts, lower the over-loaded."""
        if rate > 0 and self.load.sum() > 0:
            self.selection_bias += rate * torch.sign(self.load.mean() - self.load)
        self.load.zero_()


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """Switch-style E * sum_e f_e * P_e over top-k assignments (1.0 when perfectly balanced)."""
    n_experts = routing.probs.shape[-1]
    fraction = routing.counts.to(routing.probs.dtype) / routing.experts.numel()
    return n_experts * (fraction * routing.probs.mean(dim=0)).sum()


def router_z_loss(routing: Routing) -> torch.Tensor:
    """ST-MoE's z-loss: mean of logsumexp(logits)^2."""
    return torch.logsumexp(routing.logits, dim=-1).square().mean()


class Expert(nn.Module):
    """One SwiGLU expert: down(silu(gate(x)) * up(x)); gate and up are stored as one [2F, D] matrix."""

    def __init__(self, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.w_gate_up = nn.Linear(d_model, 2 * ffn_dim, bias=False)
        self.w_down = nn.Linear(ffn_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(swiglu(self.w_gate_up(x)))


def experts_forward(
    rows: torch.Tensor,
    experts: Sequence[Expert],
    counts: Sequence[int],
    backend: ExpertBackend = "auto",
) -> torch.Tensor:
    """Apply experts[i] to the i-th contiguous slice of `rows` (slice lengths `counts`): rows sorted by expert."""
    if rows.shape[0] == 0:
        return rows.new_zeros(rows.shape)
    if backend == "auto":
        backend = "grouped_mm" if grouped_mm_supported(rows, experts[0]) else "loop"
    if backend == "grouped_mm":
        out = _grouped(rows, experts, counts)
    elif backend == "loop":
        out = _loop(rows, experts, counts)
    else:
        raise ValueError(f"expert_backend: {backend!r} is not one of auto, grouped_mm, loop")
    # grouped_mm's backward rejects a stride-0 upstream gradient (what `out.sum().backward()` sends).
    return _ContiguousGrad.apply(out)


def grouped_mm_supported(rows: torch.Tensor, expert: Expert) -> bool:
    """Whether `torch.nn.functional.grouped_mm` can run these shapes on this device and dtype."""
    if not hasattr(F, "grouped_mm") or rows.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    if rows.is_cuda:
        if torch.cuda.get_device_capability(rows.device) < (8, 0):
            return False
    elif rows.device.type != "cpu":
        return False
    # The kernels want 16-byte aligned strides.
    d_model, ffn = expert.w_down.weight.shape
    return (d_model * rows.element_size()) % 16 == 0 and (ffn * rows.element_size()) % 16 == 0


def _grouped(rows: torch.Tensor, experts: Sequence[Expert], counts: Sequence[int]) -> torch.Tensor:
    offsets = torch.tensor(counts, device=rows.device).cumsum(0).to(torch.int32)
    w_gate_up = torch.stack([e.w_gate_up.weight for e in experts])  # [E, 2F, D]
    w_down = torch.stack([e.w_down.weight for e in experts])  # [E, D, F]
    hidden = F.grouped_mm(rows, w_gate_up.transpose(-2, -1), offs=offsets)
    return F.grouped_mm(swiglu(hidden), w_down.transpose(-2, -1), offs=offsets)


def _loop(rows: torch.Tensor, experts: Sequence[Expert], counts: Sequence[int]) -> torch.Tensor:
    outputs = []
    start = 0
    for expert, count in zip(experts, counts, strict=True):
        if count:
            outputs.append(expert(rows[start : start + count]))
        start += count
    return torch.cat(outputs)


class _ContiguousGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()

"""Hand-written autograd functions for the memory-bound parts of a layer, where eager autograd spends more time in
bookkeeping (zero-filled slice gradients, scatter-adds, decomposed norms) than in arithmetic.

Each is a plain formula with its analytic backward; `tests/model/test_kernels.py` checks them with gradcheck in
float64. Measured by `benchmarks/model_throughput.py` on the 2-core CI machine, they are what puts our fwd+bwd ahead
of the same function written with stock modules.
"""

from __future__ import annotations

import torch
from torch.autograd import Function


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """weight * x / sqrt(mean(x^2) + eps) over the last dimension (half precision computed in fp32)."""
    return _RMSNorm.apply(x, weight, eps)


class _RMSNorm(Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        rstd = torch.rsqrt(xf.square().mean(-1, keepdim=True).add_(eps))
        xhat = xf * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return (xhat * weight).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xhat, rstd, weight = ctx.saved_tensors
        g = grad.to(xhat.dtype)
        grad_w = (g * xhat).reshape(-1, xhat.shape[-1]).sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        gx = g * weight
        # d/dx of w * x * rstd: rstd * (gx - xhat * mean(gx * xhat))
        grad_x = (gx - xhat * (gx * xhat).mean(-1, keepdim=True)).mul_(rstd)
        return grad_x.to(grad.dtype), grad_w, None


def rotary_qkv(
    qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_heads: int, n_kv_heads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split packed qkv [B, T, H + 2KV, D] into q, k, v and rotate q and k (rotate-half pairing) by the tables
    [T, D]; the backward returns one packed gradient, with no zero-filled slice gradients."""
    return _RotaryQKV.apply(qkv, cos, sin, n_heads, n_kv_heads)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _rotate_half_transposed(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([x[..., half:], -x[..., :half]], dim=-1)


class _RotaryQKV(Function):
    @staticmethod
    def forward(ctx, qkv, cos, sin, n_heads, n_kv_heads):
        rot = n_heads + n_kv_heads
        c, s = cos[:, None], sin[:, None]
        qk = qkv[:, :, :rot]
        qk = torch.addcmul(qk * c, _rotate_half(qk), s)
        ctx.save_for_backward(cos, sin)
        ctx.split = (n_heads, n_kv_heads)
        q, k = qk.split([n_heads, n_kv_heads], dim=2)
        return q, k, qkv[:, :, rot:].contiguous()

    @staticmethod
    def backward(ctx, grad_q, grad_k, grad_v):
        cos, sin = ctx.saved_tensors
        c, s = cos[:, None], sin[:, None]
        g = torch.cat([grad_q, grad_k], dim=2)
        g = g * c + _rotate_half_transposed(g * s)
        return torch.cat([g, grad_v], dim=2), None, None, None, None


def permute_rows(x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """x[perm] for a permutation `perm` whose inverse is `inverse`: the backward is a gather too (no scatter-add)."""
    return _PermuteRows.apply(x, perm, inverse)


class _PermuteRows(Function):
    @staticmethod
    def forward(ctx, x, perm, inverse):
        ctx.save_for_backward(inverse)
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


def gather_token_rows(x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor, k: int) -> torch.Tensor:
    """Rows x[order // k] of tokens x [N, D], where `order` permutes the N*k token-major assignments (token t owns
    assignments t*k .. t*k+k-1) and `inverse` is its inverse: the backward gathers and sums k rows per token."""
    return _GatherTokenRows.apply(x, order, inverse, k)


class _GatherTokenRows(Function):
    @staticmethod
    def forward(ctx, x, order, inverse, k):
        ctx.save_for_backward(inverse)
        ctx.k = k
        return x.index_select(0, order // k)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        per_assignment = grad.index_select(0, inverse)
        return per_assignment.view(-1, ctx.k, grad.shape[-1]).sum(1), None, None, None


def swiglu(hidden: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for hidden = [gate | up] along the last dimension; the backward writes one packed gradient."""
    return _SwiGLU.apply(hidden)


class _SwiGLU(Function):
    @staticmethod
    def forward(ctx, hidden):
        gate, up = hidden.chunk(2, dim=-1)
        ctx.save_for_backward(hidden)
        return torch.nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        (hidden,) = ctx.saved_tensors
        gate, up = hidden.chunk(2, dim=-1)
        sig = torch.sigmoid(gate)
        silu = gate * sig
        out = torch.empty_like(hidden)
        grad_gate, grad_up = out.chunk(2, dim=-1)
        # d silu(g) / dg = sig * (1 + g * (1 - sig)) = sig + silu * (1 - sig)
        torch.mul(grad * up, sig + silu * (1 - sig), out=grad_gate)
        torch.mul(grad, silu, out=grad_up)
        return out

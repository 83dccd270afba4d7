"""The hand-written autograd functions against torch.autograd.gradcheck (float64) and their eager formulas."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from zoo_node.model.kernels import gather_token_rows, permute_rows, rms_norm, rotary_qkv, swiglu
from zoo_node.model.rope import apply_rotary


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_rms_norm():
    x, w = _rand(3, 5, 8), _rand(8)
    assert gradcheck(lambda x, w: rms_norm(x, w, 1e-5), (x, w))
    expected = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(rms_norm(x, w, 1e-5), expected)
    stock = torch.nn.functional.rms_norm(x.float(), (8,), w.float(), 1e-5)
    torch.testing.assert_close(rms_norm(x.float(), w.float(), 1e-5), stock)


def test_rotary_qkv():
    qkv = _rand(2, 5, 3 + 2 * 1, 6)
    angles = torch.randn(5, 3, dtype=torch.float64)
    cos, sin = torch.cat([angles.cos()] * 2, -1) * 1.3, torch.cat([angles.sin()] * 2, -1) * 1.3
    assert gradcheck(lambda t: rotary_qkv(t, cos, sin, 3, 1), (qkv,))
    q, k, v = rotary_qkv(qkv, cos, sin, 3, 1)
    torch.testing.assert_close(q, apply_rotary(qkv[:, :, :3], cos[:, None], sin[:, None]))
    torch.testing.assert_close(k, apply_rotary(qkv[:, :, 3:4], cos[:, None], sin[:, None]))
    torch.testing.assert_close(v, qkv[:, :, 4:])


def test_permutations():
    x = _rand(6, 4)
    perm = torch.randperm(6)
    inverse = torch.argsort(perm)
    assert gradcheck(lambda t: permute_rows(t, perm, inverse), (x,))
    torch.testing.assert_close(permute_rows(x, perm, inverse), x[perm])
    k = 2
    tokens = _rand(3, 4)
    order = torch.randperm(6)
    inverse = torch.argsort(order)
    assert gradcheck(lambda t: gather_token_rows(t, order, inverse, k), (tokens,))
    torch.testing.assert_close(gather_token_rows(tokens, order, inverse, k), tokens[order // k])


def test_swiglu():
    h = _rand(4, 3, 10)
    assert gradcheck(swiglu, (h,))
    gate, up = h.chunk(2, dim=-1)
    torch.testing.assert_close(swiglu(h), torch.nn.functional.silu(gate) * up)

"""Every attention path against the float64 reference, forward and backward, with and without a window."""

from __future__ import annotations

import pytest
import torch

from zoo_node.model.attention import causal_attention, flash_attn_available, reference_attention, select_backend

CASES = [  # (seq_len, window)
    (40, None),
    (40, 8),  # T a multiple of nothing in particular: 5 blocks
    (37, 8),  # ragged last block
    (64, 16),
    (12, 16),  # window wider than the sequence: plain causal
    (33, 1),  # a query sees only itself
]


def _inputs(seq_len: int, dtype: torch.dtype, device: str = "cpu", heads: int = 4, kv_heads: int = 2, dim: int = 16):
    gen = torch.Generator().manual_seed(seq_len)
    shapes = [(2, seq_len, heads, dim), (2, seq_len, kv_heads, dim), (2, seq_len, kv_heads, dim)]
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype) for s in shapes]


def _fwd_bwd(backend: str, q, k, v, window, grad_out):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = causal_attention(q, k, v, window, backend)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), q.grad, k.grad, v.grad


def _reference(q, k, v, window, grad_out):
    q, k, v = (t.detach().to(torch.float64).cpu().requires_grad_(True) for t in (q, k, v))
    out = reference_attention(q, k, v, window)
    out.backward(grad_out.to(torch.float64).cpu())
    return out.detach(), q.grad, k.grad, v.grad


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("backend", ["sdpa", "blocked", "auto"])
@pytest.mark.parametrize(("seq_len", "window"), CASES)
def test_cpu_paths_match_float64_reference(backend, seq_len, window, dtype, tol):
    q, k, v = _inputs(seq_len, dtype)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = _fwd_bwd(backend, q, k, v, window, grad_out)
    want = _reference(q, k, v, window, grad_out)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        torch.testing.assert_close(a.to(torch.float64), b, rtol=tol, atol=tol, msg=name)


def test_window_changes_the_result_and_blocked_is_chosen_for_long_sequences():
    q, k, v = _inputs(64, torch.float32)
    full = causal_attention(q, k, v, None)
    windowed = causal_attention(q, k, v, 8)
    assert not torch.allclose(full[:, 8:], windowed[:, 8:])
    torch.testing.assert_close(full[:, :8], windowed[:, :8])  # the first 8 queries see all their keys either way
    assert select_backend(q, 8) == "blocked"
    assert select_backend(q[:, :12], 8) == "sdpa"
    assert select_backend(q, None) == "sdpa"


def test_unknown_backend_is_rejected():
    q, k, v = _inputs(8, torch.float32)
    with pytest.raises(ValueError, match=r"^backend: 'xla'"):
        causal_attention(q, k, v, None, "xla")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA paths need a GPU")
@pytest.mark.parametrize("backend", ["sdpa", "blocked", "flash", "auto"])
@pytest.mark.parametrize(("seq_len", "window"), [(256, None), (256, 64), (250, 32)])
def test_cuda_paths_match_float64_reference(backend, seq_len, window):
    if backend == "flash" and not flash_attn_available():
        pytest.skip("flash-attn is not installed")
    q, k, v = _inputs(seq_len, torch.bfloat16, "cuda", dim=64)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = _fwd_bwd(backend, q, k, v, window, grad_out.cuda())
    want = _reference(q, k, v, window, grad_out)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        torch.testing.assert_close(a.double().cpu(), b, rtol=2e-2, atol=2e-2, msg=name)

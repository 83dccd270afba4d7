"""Causal grouped-query attention kernels, with an optional sliding window, chosen by what the device offers.

All kernels take q [B, T, H, D], k and v [B, T, KV, D] (H a multiple of KV) and return [B, T, H, D]. A window W
lets query i see keys i-W+1..i (W keys, itself included); None is full causal attention.

- `flash`: flash-attn 2 (`flash_attn_func` with `window_size=(W-1, 0)`), CUDA, fp16/bf16, when installed.
- `sdpa`: `scaled_dot_product_attention` with `is_causal` (flash / memory-efficient backends on CUDA, the flash
  kernel on CPU); with a window it passes a boolean band mask.
- `blocked`: the window done by query blocks of W rows, each against only its 2W keys (one batched SDPA call with
  a band mask), so the work grows as T*W instead of T^2; used for windowed layers once T >= 6W.
- `reference`: float64 softmax(QK^T)V, written out; the tests' ground truth.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F

Backend = Literal["auto", "flash", "sdpa", "blocked", "reference"]
BACKENDS: tuple[str, ...] = ("auto", "flash", "sdpa", "blocked", "reference")

# On CPU the blocked form beats the masked full SDPA once T is this many windows long. Measured by
# `benchmarks/model_throughput.py --attention` (window 128, fwd+bwd, masked / blocked time): 0.59x at 2 windows,
# 0.82x at 4, 2.1x at 8, 6.0x at 16.
BLOCKED_MIN_WINDOWS = 6


@functools.cache
def _flash_attn_func():
    try:
        from flash_attn import flash_attn_func  # type: ignore[import-not-found]
    except Exception:  # not installed, or built for another torch/CUDA
        return None
    return flash_attn_func


def flash_attn_available() -> bool:
    """True when the flash-attn 2 package imports."""
    return _flash_attn_func() is not None


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None, backend: Backend = "auto"
) -> torch.Tensor:
    """Causal (optionally sliding-window) attention by the chosen or best available kernel."""
    T = q.shape[1]
    if window is not None and window >= T:
        window = None  # the window does not bind: plain causal attention is the same function
    if backend == "auto":
        backend = select_backend(q, window)
    if backend == "flash":
        return _flash(q, k, v, window)
    if backend == "sdpa":
        return _sdpa(q, k, v, window)
    if backend == "blocked":
        return _blocked(q, k, v, window) if window is not None else _sdpa(q, k, v, None)
    if backend == "reference":
        return reference_attention(q, k, v, window)
    raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")


def select_backend(q: torch.Tensor, window: int | None) -> str:
    """The kernel `auto` picks for this input (see the module docstring)."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and flash_attn_available():
        return "flash"
    if window is not None and q.shape[1] >= BLOCKED_MIN_WINDOWS * window:
        return "blocked"
    return "sdpa"


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None) -> torch.Tensor:
    flash_attn_func = _flash_attn_func()
    if flash_attn_func is None:
        raise RuntimeError("flash-attn is not installed")
    window_size = (-1, -1) if window is None else (window - 1, 0)
    return flash_attn_func(q, k, v, causal=True, window_size=window_size)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None) -> torch.Tensor:
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    gqa = qh.shape[1] != kh.shape[1]
    if window is None:
        out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, enable_gqa=gqa)
    else:
        mask = band_mask(q.shape[1], window, q.device)
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, enable_gqa=gqa)
    return out.transpose(1, 2)


def band_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean [T, T] mask, True where query i may see key j: i - window < j <= i."""
    i = torch.arange(seq_len, device=device)
    diff = i[:, None] - i[None, :]
    return (diff >= 0) & (diff < window)


def _blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    B, T, H, D = q.shape
    KV = k.shape[2]
    W = window
    n_blocks = -(-T // W)
    tail = n_blocks * W - T
    # Queries of block b are positions bW..bW+W-1; their keys lie in (b-1)W..bW+W-1. Pad W keys in front (for
    # block 0) and the tail, then view the keys as overlapping 2W-long windows with stride W.
    qb = F.pad(q, (0, 0, 0, 0, 0, tail)).view(B, n_blocks, W, H, D).transpose(2, 3)
    kp = F.pad(k, (0, 0, 0, 0, W, tail))
    vp = F.pad(v, (0, 0, 0, 0, W, tail))
    # unfold: [B, n_blocks, KV, D, 2W] -> [B, n_blocks, KV, 2W, D]
    kb = kp.unfold(1, 2 * W, W).transpose(-1, -2)
    vb = vp.unfold(1, 2 * W, W).transpose(-1, -2)
    # 4-D inputs (blocks folded into the batch): CPU SDPA runs its flash kernel only on 4-D tensors.
    qb, kb, vb = (t.reshape(B * n_blocks, *t.shape[2:]) for t in (qb, kb, vb))
    mask = _block_mask(n_blocks, W, q.device).expand(B, -1, -1, -1, -1).reshape(B * n_blocks, 1, W, 2 * W)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, enable_gqa=H != KV)
    out = out.view(B, n_blocks, H, W, D).transpose(2, 3).reshape(B, n_blocks * W, H, D)
    return out[:, :T] if tail else out


@functools.lru_cache(maxsize=16)
def _block_mask(n_blocks: int, window: int, device: torch.device) -> torch.Tensor:
    """[n_blocks, 1, W, 2W]: query i of a block sees key slot j when i < j <= i + W (and not the padding of block 0)."""
    i = torch.arange(window, device=device)[:, None]
    j = torch.arange(2 * window, device=device)[None, :]
    band = (j > i) & (j <= i + window)
    mask = band.expand(n_blocks, window, 2 * window).clone()
    mask[0, :, :window] = False
    return mask[:, None]


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None) -> torch.Tensor:
    """softmax(QK^T / sqrt(D) + mask) V in float64, written out; returns q's dtype."""
    dtype = q.dtype
    q, k, v = (t.to(torch.float64).transpose(1, 2) for t in (q, k, v))
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    T = q.shape[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    allowed = band_mask(T, window if window is not None else T, q.device)
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).to(dtype)

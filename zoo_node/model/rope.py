"""Rotary position embeddings with YaRN scaling (NTK-by-parts interpolation plus attention temperature).

Convention: a head's dimensions i and i + head_dim/2 form a rotated pair ("rotate half", as in Llama and GPT-NeoX).
"""

from __future__ import annotations

import math

import torch

from zoo_node.model.config import RopeScaling


def yarn_inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling) -> torch.Tensor:
    """Per-pair rotation frequencies (float64, shape [head_dim // 2]) after YaRN's NTK-by-parts interpolation.

    Pair d has wavelength 2*pi / theta^(-2d/head_dim); r(d) = original context / wavelength counts its turns over the
    pretraining context. Pairs with r > beta_fast keep their frequency, pairs with r < beta_slow are divided by the
    scale factor, and in between the two are mixed by a ramp that is linear in d between the (floored and ceiled)
    dimensions where r crosses beta_fast and beta_slow, as the YaRN reference implementation does.
    """
    half = head_dim // 2
    exponents = torch.arange(0, half, dtype=torch.float64) * 2.0 / head_dim
    base = torch.pow(torch.tensor(theta, dtype=torch.float64), exponents)
    extrapolated = 1.0 / base
    if scaling.factor <= 1.0:
        return extrapolated
    interpolated = extrapolated / scaling.factor
    low, high = _correction_range(head_dim, theta, scaling)
    ramp = ((torch.arange(half, dtype=torch.float64) - low) / (high - low)).clamp(0.0, 1.0)
    # ramp 0: high-frequency pair, kept; ramp 1: low-frequency pair, interpolated.
    return extrapolated * (1.0 - ramp) + interpolated * ramp


def _correction_dim(turns: float, head_dim: int, theta: float, original: int) -> float:
    """The (fractional) pair index whose wavelength fits `turns` times into the original context."""
    return head_dim * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(theta))


def _correction_range(head_dim: int, theta: float, scaling: RopeScaling) -> tuple[float, float]:
    low = math.floor(_correction_dim(scaling.beta_fast, head_dim, theta, scaling.original_max_seq_len))
    high = math.ceil(_correction_dim(scaling.beta_slow, head_dim, theta, scaling.original_max_seq_len))
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # avoid a division by zero; the ramp becomes a step
    return float(low), float(high)


class RotaryEmbedding(torch.nn.Module):
    """Cosine and sine tables for positions 0..T-1, cached per (T, device, dtype); not part of the state_dict."""

    def __init__(self, head_dim: int, theta: float, scaling: RopeScaling) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.mscale = scaling.mscale
        self.register_buffer("inv_freq", yarn_inverse_frequencies(head_dim, theta, scaling), persistent=False)
        self._cache: dict[tuple[int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each [seq_len, head_dim], already multiplied by YaRN's attention factor."""
        key = (seq_len, torch.device(device), dtype)
        cached = self._cache.get(key)
        if cached is None:
            # float64 angles: position * frequency loses digits in fp32 at 128K positions.
            positions = torch.arange(seq_len, dtype=torch.float64, device=self.inv_freq.device)
            angles = torch.outer(positions, self.inv_freq)
            angles = torch.cat([angles, angles], dim=-1)
            cos = (angles.cos() * self.mscale).to(device=device, dtype=dtype)
            sin = (angles.sin() * self.mscale).to(device=device, dtype=dtype)
            if len(self._cache) > 8:
                self._cache.clear()
            cached = self._cache[key] = (cos, sin)
        return cached

    def _apply(self, fn, recurse=True):  # a .to()/.cuda() invalidates the cached tables
        self._cache = {}
        return super()._apply(fn, recurse)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, head_dim] by the tables [T, head_dim] (rotate-half pairing)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin

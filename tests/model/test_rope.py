"""YaRN RoPE: the NTK-by-parts frequencies and the attention temperature, against transformers' independent
implementation and against the properties the paper states."""

from __future__ import annotations

import math

import pytest
import torch

from zoo_node.model import PRESETS, RopeScaling
from zoo_node.model.rope import RotaryEmbedding, apply_rotary, yarn_inverse_frequencies


@pytest.mark.parametrize("name", list(PRESETS))
def test_matches_transformers_yarn(name):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = PRESETS[name]
    rs = cfg.rope_scaling
    hf_config = transformers.MixtralConfig(
        hidden_size=cfg.d_model,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_size,
        max_position_embeddings=cfg.max_seq_len,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": cfg.rope_theta,
            "factor": rs.factor,
            "original_max_position_embeddings": rs.original_max_seq_len,
            "beta_fast": rs.beta_fast,
            "beta_slow": rs.beta_slow,
        },
    )
    hf_inv_freq, hf_attention_factor = ROPE_INIT_FUNCTIONS["yarn"](hf_config, "cpu")
    ours = yarn_inverse_frequencies(cfg.head_size, cfg.rope_theta, rs)
    torch.testing.assert_close(ours.float(), hf_inv_freq.float(), rtol=1e-6, atol=0)
    assert rs.mscale == pytest.approx(hf_attention_factor, rel=1e-12)


def test_factor_one_is_plain_rope():
    freqs = yarn_inverse_frequencies(64, 10_000.0, RopeScaling(factor=1.0, original_max_seq_len=2048))
    expected = 1.0 / 10_000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    torch.testing.assert_close(freqs, expected)
    assert RopeScaling(factor=1.0).mscale == 1.0


def test_ntk_by_parts_keeps_high_and_interpolates_low_frequencies():
    scaling = RopeScaling(factor=16.0, original_max_seq_len=4096, beta_fast=32, beta_slow=1)
    head_dim, theta = 128, 500_000.0
    plain = yarn_inverse_frequencies(head_dim, theta, RopeScaling(factor=1.0))
    scaled = yarn_inverse_frequencies(head_dim, theta, scaling)
    turns = scaling.original_max_seq_len * plain / (2 * math.pi)  # rotations over the pretraining context
    kept = turns > 2 * scaling.beta_fast  # well inside the extrapolated band
    interpolated = turns < scaling.beta_slow / 2
    assert kept.any() and interpolated.any()
    torch.testing.assert_close(scaled[kept], plain[kept])
    torch.testing.assert_close(scaled[interpolated], plain[interpolated] / scaling.factor)
    ratio = plain / scaled
    assert bool((ratio[1:] >= ratio[:-1] - 1e-12).all())  # the ramp is monotone: 1 .. factor


def test_attention_temperature_scales_queries_and_keys():
    scaling = RopeScaling(factor=32.0, original_max_seq_len=4096)
    assert scaling.mscale == pytest.approx(0.1 * math.log(32.0) + 1.0)
    rope = RotaryEmbedding(16, 10_000.0, scaling)
    cos, sin = rope(8, torch.device("cpu"), torch.float64)
    torch.testing.assert_close(cos[0], torch.full((16,), scaling.mscale, dtype=torch.float64))
    torch.testing.assert_close(cos.square() + sin.square(), torch.full((8, 16), scaling.mscale**2, dtype=torch.float64))
    # Rotation keeps the relative-position property: <R(m)q, R(n)k> depends on m - n only.
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    rq, rk = apply_rotary(q.expand(8, 16), cos, sin), apply_rotary(k.expand(8, 16), cos, sin)
    assert float(rq[5] @ rk[3]) == pytest.approx(float(rq[2] @ rk[0]), rel=1e-9)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_reaches_128k_from_its_pretraining_context(name):
    cfg = PRESETS[name]
    rs = cfg.rope_scaling
    assert cfg.max_seq_len == 131_072 and rs.original_max_seq_len < cfg.max_seq_len
    assert rs.factor * rs.original_max_seq_len >= cfg.max_seq_len
    plain = yarn_inverse_frequencies(cfg.head_size, cfg.rope_theta, RopeScaling(factor=1.0))
    scaled = yarn_inverse_frequencies(cfg.head_size, cfg.rope_theta, rs)
    # The slowest pair at 128K turns no further than it did at the end of the pretraining context: no position
    # beyond what the model saw in pretraining (the interpolation half of YaRN).
    assert scaled[-1] * (cfg.max_seq_len - 1) <= plain[-1] * rs.original_max_seq_len

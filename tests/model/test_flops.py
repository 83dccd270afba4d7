"""flops_per_token: PaLM appendix B with active parameters and windows, checked against torch's FlopCounterMode on
the eager paths (reference attention, looped experts), and split exactly among a partition's shards."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo_node.model import (
    PRESETS,
    Partition,
    Zen3Config,
    Zen3Model,
    count_parameters,
    expert_rows_flops,
    flops_per_token,
)


def _config(**changes) -> Zen3Config:
    base = dict(
        vocab_size=64, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=48, max_seq_len=64,
        moe_layers=(1, 2), n_experts=4, top_k=2, expert_ffn_dim=24,
    )  # fmt: skip
    return Zen3Config(**{**base, **changes})


@pytest.mark.parametrize("changes", [{}, {"moe_layers": ()}, {"top_k": 1, "n_heads": 8, "n_kv_heads": 8}])
def test_matches_flop_counter_on_eager_paths(changes):
    cfg = _config(**changes)
    model = Zen3Model(cfg, attention_backend="reference", expert_backend="loop")
    batch, seq_len = 2, 24
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        loss, aux = model(tokens, tokens)
        (loss + aux).backward()
    assert counter.get_total_flops() == flops_per_token(cfg, seq_len) * batch * seq_len


def test_windows_count_only_the_keys_they_see():
    full, windowed = _config(), _config(windows=(8, None, 16))
    attention = 12 * 4 * 8  # 12 * H * Q per key
    assert flops_per_token(full, 64) - flops_per_token(windowed, 64) == attention * ((64 - 8) + (64 - 16))
    assert flops_per_token(full, 8) == flops_per_token(windowed, 8)  # windows that do not bind cost the same


@pytest.mark.parametrize(
    "partition",
    [Partition(((0, 3),), (1,)), Partition(((0, 1), (1, 3)), (0, 2)), Partition(((0, 2), (2, 3)), (4, 3))],
)
def test_shards_add_up_to_the_model(partition):
    cfg = _config(windows=(8, None, 16))
    shards = partition.validate(cfg).shards(cfg)
    assert sum(flops_per_token(cfg, 48, shard=s) for s in shards) == flops_per_token(cfg, 48)
    for preset in ("zen-3-moe", "zen-3-tiny-moe"):
        big = PRESETS[preset]
        part = Partition.even(big, 4, 8)
        total = sum(flops_per_token(big, 4096, shard=s) for s in part.shards(big))
        assert total == flops_per_token(big, 4096)


def test_expert_group_share_and_actual_rows():
    cfg = _config()
    part = Partition(((0, 3),), (2,))
    group = part.expert_group(cfg, 0, 1)
    # 2 MoE layers, top-2 of 4 experts, 2 experts in the group: one expert's work per token per layer.
    assert flops_per_token(cfg, 16, shard=group) == 2 * expert_rows_flops(cfg, 1)
    assert expert_rows_flops(cfg, 10) == 6 * 10 * 3 * 32 * 24


def test_active_parameters_drive_the_count():
    moe = PRESETS["zen-3-moe"]
    counts = count_parameters(moe)
    matmul_params = counts.active - counts.embedding  # the embedding is a lookup, not a matmul
    assert abs(flops_per_token(moe, 1) / (6 * matmul_params) - 1) < 1e-3  # attention is negligible at T = 1
    with pytest.raises(ValueError, match=r"^seq_len: 0"):
        flops_per_token(moe, 0)

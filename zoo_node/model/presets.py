"""The Zen-3 presets: the four announced models and two small ones that train on a 2-core CPU.

Announced sizes (parameters): zen-3-8b 8.1B, zen-3-32b 32.5B, zen-3-72b 72.3B, zen-3-moe 141B total / 24B active
(64 experts per MoE layer, top-2). All of them: a 128K-token vocabulary, a 128K context reached from an 8K (dense)
or 4K (MoE) pretraining context by YaRN, grouped-query attention with 8 KV heads, and three sliding-window layers
(window 4096) to every full-attention layer.

zen-3-moe interleaves dense and MoE layers (every odd layer is MoE) with fine-grained experts (width 3200 next to a
dense width of 22016): with a 128K vocabulary and 64 experts this is what makes 141B total and 24B active agree.

The small presets keep the architecture and shrink every width; they have a 512-token vocabulary (a byte-level
tokenizer plus room for special tokens) and still reach 128K positions by YaRN from a 512-token pretraining context.
"""

from __future__ import annotations

from zoo_node.model.config import RopeScaling, Zen3Config

VOCAB_128K = 131_072
CONTEXT_128K = 131_072


def local_global_windows(n_layers: int, window: int, every: int = 4) -> tuple[int | None, ...]:
    """Sliding-window layers with one full-attention layer every `every` layers (the last of each group)."""
    return tuple(None if (i + 1) % every == 0 else window for i in range(n_layers))


def _dense(name: str, d_model: int, n_layers: int, n_heads: int, ffn_dim: int) -> Zen3Config:
    return Zen3Config(
        name=name,
        vocab_size=VOCAB_128K,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=8,
        ffn_dim=ffn_dim,
        max_seq_len=CONTEXT_128K,
        windows=local_global_windows(n_layers, 4096),
        rope_scaling=RopeScaling(factor=16.0, original_max_seq_len=8192),
    )


def _moe() -> Zen3Config:
    n_layers = 64
    return Zen3Config(
        name="zen-3-moe",
        vocab_size=VOCAB_128K,
        d_model=6144,
        n_layers=n_layers,
        n_heads=48,
        n_kv_heads=8,
        ffn_dim=22016,
        max_seq_len=CONTEXT_128K,
        windows=local_global_windows(n_layers, 4096),
        moe_layers=tuple(range(1, n_layers, 2)),
        n_experts=64,
        top_k=2,
        expert_ffn_dim=3200,
        rope_scaling=RopeScaling(factor=32.0, original_max_seq_len=4096),
    )


def _tiny() -> Zen3Config:
    return Zen3Config(
        name="zen-3-tiny",
        vocab_size=512,
        d_model=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=384,
        max_seq_len=CONTEXT_128K,
        rope_theta=10_000.0,
        rope_scaling=RopeScaling(factor=256.0, original_max_seq_len=512),
    )


def _tiny_moe() -> Zen3Config:
    return Zen3Config(
        name="zen-3-tiny-moe",
        vocab_size=512,
        d_model=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=384,
        max_seq_len=CONTEXT_128K,
        windows=(128, None, 128, None),
        moe_layers=(0, 1, 2, 3),
        n_experts=8,
        top_k=2,
        expert_ffn_dim=256,
        rope_theta=10_000.0,
        rope_scaling=RopeScaling(factor=256.0, original_max_seq_len=512),
    )


PRESETS: dict[str, Zen3Config] = {
    "zen-3-8b": _dense("zen-3-8b", d_model=4096, n_layers=32, n_heads=32, ffn_dim=14464),
    "zen-3-32b": _dense("zen-3-32b", d_model=5120, n_layers=64, n_heads=40, ffn_dim=27648),
    "zen-3-72b": _dense("zen-3-72b", d_model=8192, n_layers=80, n_heads=64, ffn_dim=29568),
    "zen-3-moe": _moe(),
    "zen-3-tiny": _tiny(),
    "zen-3-tiny-moe": _tiny_moe(),
}

# The announced parameter counts (total, active) that the presets must match within 1%.
ANNOUNCED_PARAMS: dict[str, tuple[float, float]] = {
    "zen-3-8b": (8.1e9, 8.1e9),
    "zen-3-32b": (32.5e9, 32.5e9),
    "zen-3-72b": (72.3e9, 72.3e9),
    "zen-3-moe": (141e9, 24e9),
}


def get_preset(name: str) -> Zen3Config:
    """The preset called `name`; KeyError-free: an unknown name raises ValueError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"preset: unknown preset {name!r} (known: {', '.join(PRESETS)})") from None

"""`Zen3Config`: the shape of a Zen-3 model, validated on construction (bad values: ValueError naming the field)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RopeScaling:
    """YaRN (NTK-by-parts) RoPE scaling, arXiv 2309.00071.

    `factor` s stretches the context from `original_max_seq_len` (the pretraining context) to
    `s * original_max_seq_len`. Rotary dimensions whose wavelength fits more than `beta_fast` times into the original
    context are kept (extrapolated), those fitting fewer than `beta_slow` times are interpolated (frequency / s), and
    a linear ramp over the dimension index joins the two (as in the reference implementation). Queries and keys are
    both multiplied by `attention_factor` (default `0.1 * ln(s) + 1`), which divides the softmax temperature by its
    square. `factor == 1` is plain RoPE.
    """

    factor: float = 1.0
    original_max_seq_len: int = 8192
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None

    @property
    def mscale(self) -> float:
        """The factor applied to both queries and keys (sqrt(1/t) in the paper)."""
        if self.attention_factor is not None:
            return self.attention_factor
        return 1.0 if self.factor <= 1.0 else 0.1 * math.log(self.factor) + 1.0


@dataclass(frozen=True)
class Zen3Config:
    """A Zen-3 decoder: pre-norm (RMSNorm) blocks of grouped-query attention and a SwiGLU FFN or top-k MoE.

    `windows[i]` is the sliding window of layer i (a query attends to itself and the `window - 1` keys before it) or
    None for full causal attention. `moe_layers` lists the layers whose FFN is a mixture of `n_experts` SwiGLU
    experts of width `expert_ffn_dim`, of which each token uses `top_k`; the other layers have a dense SwiGLU FFN of
    width `ffn_dim`.
    """

    name: str = "custom"
    vocab_size: int = 512
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int | None = None
    ffn_dim: int = 384
    max_seq_len: int = 1024
    windows: tuple[int | None, ...] | None = None
    # MoE
    moe_layers: tuple[int, ...] = ()
    n_experts: int = 0
    top_k: int = 2
    expert_ffn_dim: int = 0
    router_aux_loss_coef: float = 0.01
    router_z_loss_coef: float = 0.001
    router_bias_update_rate: float = 0.0
    # Positions, norms, init
    rope_theta: float = 500_000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.windows is None:
            object.__setattr__(self, "windows", (None,) * self.n_layers)
        else:
            object.__setattr__(self, "windows", tuple(self.windows))
        object.__setattr__(self, "moe_layers", tuple(sorted(self.moe_layers)))
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
        self._validate()

    # --- validation -------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "max_seq_len"):
            _positive(name, getattr(self, name))
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(f"n_heads: {self.n_heads} heads do not divide d_model {self.d_model} (or set head_dim)")
        if self.head_dim is not None:
            _positive("head_dim", self.head_dim)
        if self.head_size % 2:
            raise ValueError(f"head_dim: {self.head_size} must be even for rotary embeddings")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads: {self.n_kv_heads} must divide n_heads {self.n_heads}")
        if len(self.windows) != self.n_layers:
            raise ValueError(f"windows: {len(self.windows)} entries for {self.n_layers} layers")
        for i, w in enumerate(self.windows):
            if w is None:
                continue
            if not isinstance(w, int) or w < 1:
                raise ValueError(f"windows[{i}]: {w!r} is not a positive window (use None for full attention)")
            if w > self.max_seq_len:
                raise ValueError(f"windows[{i}]: window {w} is beyond the context max_seq_len {self.max_seq_len}")
        if len(set(self.moe_layers)) != len(self.moe_layers):
            raise ValueError(f"moe_layers: {self.moe_layers} lists a layer twice")
        for i in self.moe_layers:
            if not 0 <= i < self.n_layers:
                raise ValueError(f"moe_layers: layer {i} is outside 0..{self.n_layers - 1}")
        if self.moe_layers:
            _positive("n_experts", self.n_experts)
            _positive("expert_ffn_dim", self.expert_ffn_dim)
            _positive("top_k", self.top_k)
            if self.top_k > self.n_experts:
                raise ValueError(f"top_k: {self.top_k} is above the expert count n_experts {self.n_experts}")
        if len(self.moe_layers) < self.n_layers:
            _positive("ffn_dim", self.ffn_dim)
        for name in ("router_aux_loss_coef", "router_z_loss_coef", "router_bias_update_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} must not be negative")
        rs = self.rope_scaling
        if rs.factor < 1.0:
            raise ValueError(f"rope_scaling.factor: {rs.factor} must be at least 1")
        _positive("rope_scaling.original_max_seq_len", rs.original_max_seq_len)
        if not rs.beta_fast > rs.beta_slow > 0:
            raise ValueError(
                f"rope_scaling.beta_fast: need beta_fast > beta_slow > 0, got {rs.beta_fast} and {rs.beta_slow}"
            )
        if self.max_seq_len > rs.factor * rs.original_max_seq_len:
            raise ValueError(
                f"max_seq_len: {self.max_seq_len} is beyond rope_scaling.factor {rs.factor} x "
                f"original_max_seq_len {rs.original_max_seq_len}"
            )
        if self.rope_theta <= 1:
            raise ValueError(f"rope_theta: {self.rope_theta} must be above 1")
        if self.norm_eps <= 0 or self.init_std <= 0:
            raise ValueError("norm_eps and init_std must be positive")

    # --- derived shape ----------------------------------------------------------------------------------------
    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def is_moe(self) -> bool:
        return bool(self.moe_layers)

    def is_moe_layer(self, index: int) -> bool:
        return index in self.moe_layers

    def replace(self, **changes: Any) -> Zen3Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Zen3Config:
        data = dict(data)
        if isinstance(data.get("rope_scaling"), dict):
            data["rope_scaling"] = RopeScaling(**data["rope_scaling"])
        for key in ("windows", "moe_layers"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a Zen3Config field")
        return cls(**data)


def _positive(name: str, value: int | float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: {value!r} must be positive")

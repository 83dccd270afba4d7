"""Forward+backward tokens/s of zen-3-tiny-moe against HF transformers' Mixtral of the same size, in one run.

    python benchmarks/model_throughput.py                # CPU: ours vs the peer, ratios printed
    python benchmarks/model_throughput.py --attention    # also the window kernels (masked SDPA vs blocked)
    python benchmarks/model_throughput.py --json

The peer is `MixtralForCausalLM` with `attn_implementation="sdpa"` and `experts_implementation="grouped_mm"`,
configured to zen-3-tiny-moe's widths, heads, experts, vocabulary and YaRN RoPE. Mixtral cannot mix sliding-window
and full layers, so the peer runs full causal attention in every layer; the benchmark times two of ours:
- `same-function`: zen-3-tiny-moe with every window removed. Before timing, our weights are copied into the peer
  and both language-model losses must agree (rtol 1e-4): the two compute the same function.
- `zen-3-tiny-moe`: the preset as it is (windows 128 on layers 0 and 2).
Each variant runs in turn within every round (so load from other processes hits all of them alike) and the median
round time counts. Both sides compute their balancing losses (ours also the z-loss).

On CUDA it also measures the MFU of an 8B-shaped pipeline stage in bf16 (see benchmarks/gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo_node.model import Zen3Config, Zen3Model, get_preset
from zoo_node.model.attention import causal_attention


def peer_config(cfg: Zen3Config):
    """A transformers MixtralConfig of the same shape as `cfg` (full attention in every layer)."""
    from transformers import MixtralConfig

    rs = cfg.rope_scaling
    return MixtralConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.expert_ffn_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_size,
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        sliding_window=None,
        num_local_experts=cfg.n_experts,
        num_experts_per_tok=cfg.top_k,
        router_aux_loss_coef=cfg.router_aux_loss_coef,
        output_router_logits=True,
        tie_word_embeddings=False,
        use_cache=False,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": cfg.rope_theta,
            "factor": rs.factor,
            "original_max_position_embeddings": rs.original_max_seq_len,
            "beta_fast": rs.beta_fast,
            "beta_slow": rs.beta_slow,
        },
        attn_implementation="sdpa",
        experts_implementation="grouped_mm",
    )


def copy_weights_to_peer(ours: Zen3Model, peer) -> None:
    """Load our parameters into the Mixtral peer (same layout up to names and the fused QKV split)."""
    cfg = ours.config
    q_rows, kv_rows = cfg.n_heads * cfg.head_size, cfg.n_kv_heads * cfg.head_size
    sd = ours.state_dict()
    out = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(cfg.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        wq, wk, wv = sd[p + "attn.wqkv.weight"].split([q_rows, kv_rows, kv_rows])
        out |= {
            q + "self_attn.q_proj.weight": wq,
            q + "self_attn.k_proj.weight": wk,
            q + "self_attn.v_proj.weight": wv,
            q + "self_attn.o_proj.weight": sd[p + "attn.wo.weight"],
            q + "input_layernorm.weight": sd[p + "attn_norm.weight"],
            q + "post_attention_layernorm.weight": sd[p + "ffn_norm.weight"],
            q + "mlp.gate.weight": sd[p + "moe.router.weight"],
            q + "mlp.experts.gate_up_proj": torch.stack(
                [sd[p + f"moe.experts.{e}.w_gate_up.weight"] for e in range(cfg.n_experts)]
            ),
            q + "mlp.experts.down_proj": torch.stack(
                [sd[p + f"moe.experts.{e}.w_down.weight"] for e in range(cfg.n_experts)]
            ),
        }
    missing, unexpected = peer.load_state_dict(out, strict=False)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise RuntimeError(f"peer weights do not line up: missing {missing}, unexpected {unexpected}")


def peer_lm_loss(peer, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The peer's cross-entropy without its auxiliary loss (HF adds coef * aux_loss to `loss`)."""
    out = peer(input_ids=tokens, labels=targets, shift_labels=targets)
    return out.loss - peer.config.router_aux_loss_coef * out.aux_loss


def time_rounds(fns: dict[str, Callable[[], None]], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run every function `warmup` times, then `rounds` rounds of each in turn (order rotated); seconds per run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def train_step(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss, aux = model(tokens, targets)
        (loss + aux).backward()

    return step


def peer_step(peer, tokens: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        peer.zero_grad(set_to_none=True)
        # Our targets are already shifted; `shift_labels` tells HF's loss not to shift them again.
        peer(input_ids=tokens, labels=targets, shift_labels=targets).loss.backward()

    return step


def model_benchmark(preset: str, batch: int, seq_len: int, rounds: int) -> dict:
    from transformers import MixtralForCausalLM

    cfg = get_preset(preset)
    same = cfg.replace(windows=(None,) * cfg.n_layers)
    torch.manual_seed(0)
    ours = Zen3Model(cfg, seed=0)
    ours_same = Zen3Model(same, seed=0)
    peer = MixtralForCausalLM(peer_config(cfg))
    copy_weights_to_peer(ours_same, peer)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq_len), generator=gen)
    targets = torch.randint(0, cfg.vocab_size, (batch, seq_len), generator=gen)
    with torch.no_grad():
        our_loss = ours_same(tokens, targets)[0]
        their_loss = peer_lm_loss(peer, tokens, targets)
    if not torch.allclose(our_loss, their_loss, rtol=1e-4, atol=0):
        raise RuntimeError(f"the peer computes another function: loss {their_loss.item()} vs ours {our_loss.item()}")
    times = time_rounds(
        {
            "same-function": train_step(ours_same, tokens, targets),
            preset: train_step(ours, tokens, targets),
            "peer": peer_step(peer, tokens, targets),
        },
        rounds,
    )
    tokens_per_step = batch * seq_len
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "preset": preset,
        "batch": batch,
        "seq_len": seq_len,
        "rounds": rounds,
        "loss_ours": our_loss.item(),
        "loss_peer": their_loss.item(),
        "tokens_per_s": {k: tokens_per_step / v for k, v in med.items()},
        "ratio_same_function": med["peer"] / med["same-function"],
        "ratio_preset": med["peer"] / med[preset],
    }


def attention_benchmark(rounds: int) -> list[dict]:
    """fwd+bwd ms of a windowed layer's attention by the masked SDPA and the blocked kernel, window 128."""
    rows = []
    window, heads, kv_heads, dim, batch = 128, 4, 2, 32, 4
    for seq_len in (256, 512, 1024, 2048):
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(batch, seq_len, heads, dim, generator=gen, requires_grad=True)
        k = torch.randn(batch, seq_len, kv_heads, dim, generator=gen, requires_grad=True)
        v = torch.randn(batch, seq_len, kv_heads, dim, generator=gen, requires_grad=True)

        def run(backend: str, q=q, k=k, v=v) -> Callable[[], None]:
            return lambda: causal_attention(q, k, v, window, backend).sum().backward()

        times = time_rounds({"sdpa": run("sdpa"), "blocked": run("blocked")}, rounds, warmup=1)
        med = {k: statistics.median(t) * 1e3 for k, t in times.items()}
        rows.append({"seq_len": seq_len, "window": window, **{f"{k}_ms": v for k, v in med.items()}})
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="zen-3-tiny-moe")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--attention", action="store_true", help="also time the window kernels")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import transformers

    result = {"machine": machine(), "transformers": transformers.__version__}
    result["model"] = model_benchmark(args.preset, args.batch, args.seq_len, args.rounds)
    if args.attention:
        result["attention"] = attention_benchmark(max(3, args.rounds // 2))
    if torch.cuda.is_available():
        from gpu_check import stage_mfu  # type: ignore[import-not-found]

        result["cuda_stage_mfu"] = stage_mfu()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    m = result["model"]
    print(f"machine: {result['machine']}; transformers {result['transformers']}")
    print(f"{m['preset']}, batch {m['batch']} x {m['seq_len']} tokens, fp32, fwd+bwd, median of {m['rounds']} rounds")
    print(f"same function check: loss ours {m['loss_ours']:.6f}, peer {m['loss_peer']:.6f}")
    for name, tps in m["tokens_per_s"].items():
        print(f"  {name:<16} {tps:10.0f} tokens/s")
    print(f"ratio ours/peer, same function (all layers full attention): {m['ratio_same_function']:.3f}")
    print(f"ratio ours/peer, {m['preset']} as specified (windows on layers 0, 2): {m['ratio_preset']:.3f}")
    for row in result.get("attention", []):
        print(
            f"  attention T={row['seq_len']} window={row['window']}: masked sdpa {row['sdpa_ms']:.1f} ms, "
            f"blocked {row['blocked_ms']:.1f} ms ({row['sdpa_ms'] / row['blocked_ms']:.2f}x)"
        )
    if "cuda_stage_mfu" in result:
        print(f"CUDA: {result['cuda_stage_mfu']}")


if __name__ == "__main__":
    main()

"""CUDA checks of the Zen-3 model (not run in CI: CI has no GPU).

    python benchmarks/gpu_check.py            # checks, then the MFU of an 8B-shaped stage in bf16
    python benchmarks/gpu_check.py --json

1. Attention: every CUDA path (flash-attn 2 with window_size when installed, SDPA, blocked) in bf16 against the
   float64 reference, forward and backward, with and without a window.
2. Experts: grouped_mm against the per-expert loop in bf16, forward and backward.
3. The model: zen-3-tiny-moe on CUDA (fp32) gives the CPU's loss; sharded == full on CUDA (fp32, rtol 1e-4).
4. MFU: forward+backward of 4 layers of zen-3-8b (d 4096, 32 heads, 8 KV heads, window 4096 on 3 of 4 layers) as a
   pipeline stage in bf16, batch 1 x 8192 tokens: model FLOPs (flops_per_token of the stage, PaLM appendix B) /
   time / the device's peak dense bf16 FLOP/s (zoo_node.peaks).
Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo_node.model import (
    LocalComposition,
    Partition,
    StageShard,
    Zen3Config,
    Zen3Model,
    flash_attn_available,
    flops_per_token,
    get_preset,
)
from zoo_node.model.attention import causal_attention, reference_attention
from zoo_node.model.moe import Expert, experts_forward


def _max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_attention() -> list[dict]:
    rows = []
    backends = ["sdpa", "blocked"] + (["flash"] if flash_attn_available() else [])
    for seq_len, window in [(2048, None), (2048, 256), (2000, 512)]:
        gen = torch.Generator().manual_seed(seq_len)
        shapes = [(2, seq_len, 16, 128), (2, seq_len, 4, 128), (2, seq_len, 4, 128)]
        base = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        grad = torch.randn(shapes[0], generator=gen, dtype=torch.float64)
        ref_in = [t.clone().requires_grad_(True) for t in base]
        ref = reference_attention(*ref_in, window)
        ref.backward(grad)
        for backend in backends:
            inp = [t.to("cuda", torch.bfloat16).requires_grad_(True) for t in base]
            out = causal_attention(*inp, window, backend)
            out.backward(grad.to("cuda", torch.bfloat16))
            errs = [_max_rel_err(out, ref)] + [_max_rel_err(a.grad, b.grad) for a, b in zip(inp, ref_in, strict=True)]
            rows.append(
                {"check": "attention", "backend": backend, "seq_len": seq_len, "window": window,
                 "max_rel_err": max(errs), "ok": max(errs) < 3e-2}
            )  # fmt: skip
    return rows


def check_experts() -> dict:
    torch.manual_seed(0)
    experts = [Expert(1024, 2048).to("cuda", torch.bfloat16) for _ in range(8)]
    counts = [300, 0, 517, 128, 1, 900, 77, 333]
    rows = torch.randn(sum(counts), 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(rows)
    results = {}
    for backend in ("grouped_mm", "loop"):
        rows.grad = None
        for e in experts:
            e.zero_grad(set_to_none=True)
        out = experts_forward(rows, experts, counts, backend)
        out.backward(grad)
        results[backend] = (out.detach(), rows.grad.clone(), experts[0].w_down.weight.grad.clone())
    errs = [_max_rel_err(a, b) for a, b in zip(results["grouped_mm"], results["loop"], strict=True)]
    return {"check": "experts grouped_mm vs loop (bf16)", "max_rel_err": max(errs), "ok": max(errs) < 2e-2}


def check_model() -> list[dict]:
    cfg = get_preset("zen-3-tiny-moe")
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (4, 384), generator=gen)
    cpu_model = Zen3Model(cfg, seed=0)
    with torch.no_grad():
        cpu_loss = cpu_model(tokens, tokens)[0]
        gpu_loss = cpu_model.cuda()(tokens.cuda(), tokens.cuda())[0]
    out = [{"check": "tiny-moe loss CUDA vs CPU (fp32)", "cpu": cpu_loss.item(), "cuda": gpu_loss.item(),
            "ok": abs(cpu_loss.item() - gpu_loss.item()) < 1e-3 * abs(cpu_loss.item())}]  # fmt: skip
    part = Partition(((0, 1), (1, 4)), (2, 3))
    full = Zen3Model(cfg, seed=1).cuda()
    comp = LocalComposition(cfg, part, seed=1).cuda()
    results = []
    for model in (full, comp):
        loss, aux = model(tokens.cuda(), tokens.cuda())
        (loss + aux).backward()
        grads = {n: p.grad for m in ([model] if model is full else comp.shards()) for n, p in m.named_parameters()}
        results.append((loss.item(), grads))
    worst = max(_max_rel_err(results[1][1][n], g) for n, g in results[0][1].items() if g is not None)
    out.append({"check": "sharded == full on CUDA (fp32)", "loss_full": results[0][0], "loss_sharded": results[1][0],
                "max_rel_grad_err": worst, "ok": worst < 1e-4})  # fmt: skip
    return out


def stage_mfu(batch: int = 1, seq_len: int = 8192, steps: int = 10) -> dict:
    """MFU of a 4-layer stage of zen-3-8b in bf16 (layers 4..7: no embedding, no head)."""
    from zoo_node.peaks import normalise_gpu_name, table_peak_flops

    cfg: Zen3Config = get_preset("zen-3-8b")
    part = Partition(((0, 4), (4, 8), (8, cfg.n_layers)))
    with torch.device("cuda"):
        stage = StageShard(cfg, part, 1, seed=None)
    stage = stage.to(torch.bfloat16)
    x = torch.randn(batch, seq_len, cfg.d_model, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    for _ in range(3):
        out, _ = stage(x)
        out.backward(grad)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        out, _ = stage(x)
        out.backward(grad)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    flops = flops_per_token(cfg, seq_len, shard=part.stage(cfg, 1)) * batch * seq_len
    name = torch.cuda.get_device_name()
    peak = table_peak_flops(name)
    return {
        "device": name,
        "device_model": normalise_gpu_name(name),
        "flash_attn": flash_attn_available(),
        "tokens_per_s": batch * seq_len / seconds,
        "achieved_tflops": flops / seconds / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": flops / seconds / peak if peak else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device", file=sys.stderr)
        return 2
    checks = [*check_attention(), check_experts(), *check_model()]
    result = {"torch": torch.__version__, "checks": checks, "stage_mfu": stage_mfu()}
    ok = all(c["ok"] for c in checks)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for c in checks:
            print(("ok   " if c["ok"] else "FAIL ") + json.dumps({k: v for k, v in c.items() if k != "ok"}))
        print("stage MFU:", json.dumps(result["stage_mfu"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

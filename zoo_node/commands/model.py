"""`zoo-node model info`: a preset's parameter counts and training FLOPs per token."""

from __future__ import annotations

import json

import typer

from zoo_node.errors import ConfigError

model_app = typer.Typer(help="Inspect the Zen-3 model presets.", no_args_is_help=True)


@model_app.command("info")
def info(
    preset: str = typer.Option(..., "--preset", help="Preset name, e.g. zen-3-8b, zen-3-moe, zen-3-tiny-moe."),
    seq_len: int = typer.Option(4096, "--seq-len", help="Sequence length that the FLOPs are counted at."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Print total_params, active_params and flops_per_token (PaLM appendix B) of a preset, counted without
    allocating the model."""
    from zoo_node.model import ANNOUNCED_PARAMS, count_parameters, flops_per_token, get_preset

    try:
        config = get_preset(preset)
        if seq_len > config.max_seq_len:
            raise ValueError(f"seq_len: {seq_len} is beyond the context of {preset} ({config.max_seq_len})")
        flops = flops_per_token(config, seq_len)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    counts = count_parameters(config)
    result: dict = {
        "preset": preset,
        "total_params": counts.total,
        "active_params": counts.active,
        "flops_per_token": flops,
        "seq_len": seq_len,
        "embedding_params": counts.embedding,
        "n_layers": config.n_layers,
        "d_model": config.d_model,
        "n_heads": config.n_heads,
        "n_kv_heads": config.n_kv_heads,
        "vocab_size": config.vocab_size,
        "max_seq_len": config.max_seq_len,
        "pretraining_seq_len": config.rope_scaling.original_max_seq_len,
        "rope_scaling_factor": config.rope_scaling.factor,
        "sliding_window_layers": sum(w is not None for w in config.windows),
        "moe_layers": len(config.moe_layers),
        "n_experts": config.n_experts if config.is_moe else 0,
        "top_k": config.top_k if config.is_moe else 0,
    }
    if preset in ANNOUNCED_PARAMS:
        total, active = ANNOUNCED_PARAMS[preset]
        result["announced_total_params"] = int(total)
        result["announced_active_params"] = int(active)
        result["deviation_total"] = counts.total / total - 1
        result["deviation_active"] = counts.active / active - 1
    if json_out:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"{preset}")
    typer.echo(f"  total_params     {counts.total:>20,} ({counts.total / 1e9:.2f}B)")
    typer.echo(f"  active_params    {counts.active:>20,} ({counts.active / 1e9:.2f}B)")
    typer.echo(f"  flops_per_token  {flops:>20,} (seq_len {seq_len}, fwd+bwd)")
    if "deviation_total" in result:
        typer.echo(
            f"  vs announced     total {result['deviation_total']:+.2%}, active {result['deviation_active']:+.2%}"
        )
    windows = sorted({w for w in config.windows if w is not None})
    typer.echo(
        f"  shape            {config.n_layers} layers, d_model {config.d_model}, {config.n_heads} heads "
        f"({config.n_kv_heads} KV), vocab {config.vocab_size}, context {config.max_seq_len} "
        f"(YaRN x{config.rope_scaling.factor:g} from {config.rope_scaling.original_max_seq_len})"
    )
    if windows:
        typer.echo(f"  attention        {result['sliding_window_layers']} sliding-window layers (window {windows})")
    if config.is_moe:
        moe = f"{len(config.moe_layers)} MoE layers x {config.n_experts} experts, top-{config.top_k}"
        typer.echo(f"  experts          {moe}")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")

"""Checkpoints of a worker's shards in its home: parameters and optimizer state as safetensors, plus a JSON header.

Layout: `<home>/checkpoints/<run>/<shard with / as ->/{model,optimizer}.safetensors` and `meta.json` (round, run
hash, shard). Files are written to a temporary name and renamed, so a crash mid-write leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from zoo_node.errors import ZooError


class CheckpointError(ZooError):
    """A checkpoint exists but does not fit this run or shard."""


@dataclass(frozen=True)
class CheckpointMeta:
    run: str
    run_hash: str
    shard: str
    round: int


def checkpoint_dir(home: Path, run: str, shard: str) -> Path:
    return Path(home) / "checkpoints" / run / shard.replace("/", "-")


def optimizer_tensors(
    optimizer: torch.optim.Optimizer, names: dict[torch.nn.Parameter, str]
) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state tensors, named `<param>.<state key>`."""
    out = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                out[f"{names[param]}.{key}"] = value.detach().cpu().contiguous()
    return out


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(
    home: Path, meta: CheckpointMeta, module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Path:
    directory = checkpoint_dir(home, meta.run, meta.shard)
    directory.mkdir(parents=True, exist_ok=True)
    names = {p: n for n, p in module.named_parameters()}
    _atomic_save(dict(module.state_dict()), directory / "model.safetensors")
    _atomic_save(optimizer_tensors(optimizer, names), directory / "optimizer.safetensors")
    tmp = directory / "meta.json.tmp"
    tmp.write_text(json.dumps(meta.__dict__, sort_keys=True))
    os.replace(tmp, directory / "meta.json")
    return directory


def load_checkpoint(
    home: Path, run: str, run_hash: str, shard: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> CheckpointMeta | None:
    """Restore a shard from its checkpoint; None if there is none. `CheckpointError` if it belongs elsewhere."""
    directory = checkpoint_dir(home, run, shard)
    if not (directory / "meta.json").exists():
        return None
    try:
        meta = CheckpointMeta(**json.loads((directory / "meta.json").read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{directory}/meta.json: unreadable checkpoint header: {exc}") from None
    if meta.run_hash != run_hash or meta.shard != shard:
        raise CheckpointError(
            f"{directory}: checkpoint of run hash {meta.run_hash[:12]} shard {meta.shard}, "
            f"not of this run ({run_hash[:12]}) and shard {shard}; move it away to start fresh"
        )
    state = load_file(str(directory / "model.safetensors"))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{directory}: parameters do not match the shard (missing {missing}, extra {unexpected})")
    names = {p: n for n, p in module.named_parameters()}
    saved = load_file(str(directory / "optimizer.safetensors"))
    with torch.no_grad():
        for param, state in optimizer.state.items():
            for key, value in state.items():
                name = f"{names[param]}.{key}"
                if isinstance(value, torch.Tensor) and name in saved:
                    value.copy_(saved[name])
    return meta

"""zen-3-tiny-moe learns: on a small fixed corpus (the standard library's own source, byte-level) the loss falls
over 50 steps, through windowed and full layers, the MoE and its balancing losses."""

from __future__ import annotations

import json.decoder
from pathlib import Path

import torch

from zoo_node.model import Zen3Model, get_preset


def _corpus() -> torch.Tensor:
    text = Path(json.decoder.__file__).read_bytes()  # on every machine with Python; fixed for a Python version
    return torch.tensor(list(text), dtype=torch.int64)


def test_tiny_moe_loss_falls_over_50_steps():
    torch.manual_seed(0)
    cfg = get_preset("zen-3-tiny-moe").replace(router_bias_update_rate=0.001)
    model = Zen3Model(cfg, seed=0)
    data = _corpus()
    batch, seq_len = 4, 160  # longer than the 128-token window of layers 0 and 2
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(50):
        starts = torch.randint(0, data.numel() - seq_len - 1, (batch,), generator=gen)
        window = torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])
        loss, aux = model(window[:, :-1], window[:, 1:])
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        opt.step()
        model.update_router_biases()
        losses.append(loss.item())
    last = sum(losses[-5:]) / 5
    assert losses[0] > 5.8  # about ln(512) = 6.24: an untrained model
    assert last < losses[0] - 2.5, losses
    assert last < sum(losses[5:10]) / 5 - 0.3, losses  # still falling after the first easy steps
    counts = model.expert_counts()
    assert sorted(counts) == [0, 1, 2, 3] and all(int(c.sum()) == 2 * batch * seq_len for c in counts.values())
    assert any(bool(m.router.selection_bias.any()) for m in model.moe_layers())

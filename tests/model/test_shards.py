"""Sharded == full: a partition's shards composed in one process give the full model's loss and every gradient."""

from __future__ import annotations

import pytest
import torch

from zoo_node.model import (
    ExpertGroup,
    LocalComposition,
    Partition,
    StageShard,
    Zen3Config,
    Zen3Model,
    build_shard,
    load_full_state_dict,
    stage_backward,
)


def _config() -> Zen3Config:
    # Dense layer 0, MoE layers 1..4, sliding windows mixed with full layers.
    return Zen3Config(
        vocab_size=96,
        d_model=32,
        n_layers=5,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=64,
        max_seq_len=64,
        windows=(8, None, 8, None, 8),
        moe_layers=(1, 2, 3, 4),
        n_experts=6,
        top_k=2,
        expert_ffn_dim=48,
    )


PARTITIONS = {
    "one-stage-experts-split-3": Partition(((0, 5),), (3,)),
    "uneven-1-4-experts-split-4": Partition(((0, 1), (1, 5)), (0, 4)),
    "uneven-3-2-groups-2-1": Partition(((0, 3), (3, 5)), (2, 1)),
    "every-layer-a-stage": Partition(((0, 1), (1, 2), (2, 3), (3, 4), (4, 5)), (0, 6, 1, 5, 2)),
}


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.randint(0, 96, (2, 40), generator=gen), torch.randint(0, 96, (2, 40), generator=gen)


@pytest.fixture(scope="module")
def full_result(batch):
    model = Zen3Model(_config(), seed=3)
    loss, aux = model(*batch)
    (loss + aux).backward()
    return model, loss.detach(), aux.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", list(PARTITIONS))
def test_sharded_equals_full(name, batch, full_result):
    model, loss, aux, grads = full_result
    comp = LocalComposition(_config(), PARTITIONS[name], seed=3)
    # Independently initialised shards hold the full model's weights under the full model's names.
    merged = comp.full_state_dict()
    assert merged.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(merged[key], value), key
    shard_loss, shard_aux = comp(*batch)
    (shard_loss + shard_aux).backward()
    torch.testing.assert_close(shard_loss, loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(shard_aux, aux, rtol=1e-5, atol=0)
    shard_grads = {n: p.grad for shard in comp.shards() for n, p in shard.named_parameters()}
    assert shard_grads.keys() == grads.keys()
    for key, grad in grads.items():
        assert shard_grads[key] is not None, key
        torch.testing.assert_close(shard_grads[key], grad, rtol=1e-5, atol=1e-7, msg=key)


def test_stage_by_stage_with_backward_of_each_stage(batch, full_result):
    """How a data plane drives it: every stage's forward and backward separately, activations cut between stages,
    expert groups called through the dispatcher with their own autograd graphs."""
    model, loss, _, grads = full_result
    cfg, part = _config(), PARTITIONS["uneven-3-2-groups-2-1"]
    stages = [StageShard(cfg, part, s, seed=None) for s in range(2)]
    groups = {(0, 0): build_shard(cfg, part, "experts/0/0", seed=None), (0, 1): build_shard(cfg, part, "experts/0/1")}
    groups[(1, 0)] = build_shard(cfg, part, "experts/1/0", seed=None)
    full_sd = model.state_dict()
    calls: list[tuple[int, int, int]] = []
    for shard in [*stages, *groups.values()]:
        load_full_state_dict(shard, full_sd)
    for s, stage in enumerate(stages):

        def dispatch(layer, group, rows, ids, s=s):
            calls.append((layer, group, rows.shape[0]))
            assert rows.shape[0] > 0
            return _Remote.apply(rows, lambda leaf: groups[(s, group)](layer, leaf, ids))

        stage.set_dispatcher(dispatch)
    tokens, targets = batch
    h, aux0 = stages[0](tokens)
    h_in = h.detach().requires_grad_(True)
    out, aux1 = stages[1](h_in, targets)
    torch.testing.assert_close(out, loss, rtol=1e-5, atol=0)
    stage_backward(out, aux1, None)
    stage_backward(h, aux0, h_in.grad)
    assert {layer for layer, _, _ in calls} == {1, 2, 3, 4}
    got = {n: p.grad for m in [*stages, *groups.values()] for n, p in m.named_parameters()}
    for key, grad in grads.items():
        torch.testing.assert_close(got[key], grad, rtol=1e-5, atol=1e-7, msg=key)


class _Remote(torch.autograd.Function):
    """Stands for a remote call: forward returns the server's output; backward runs the server's backward."""

    @staticmethod
    def forward(ctx, rows, server_forward):
        # The server's side: its own leaf and graph, kept until the backward request comes.
        ctx.leaf = rows.detach().requires_grad_(True)
        with torch.enable_grad():
            ctx.out = server_forward(ctx.leaf)
        return ctx.out.detach()

    @staticmethod
    def backward(ctx, grad):
        torch.autograd.backward(ctx.out, grad)
        return ctx.leaf.grad, None


def test_group_with_no_tokens_is_not_called(batch):
    cfg = _config()
    part = Partition(((0, 5),), (6,))
    stage = StageShard(cfg, part, 0)
    groups = [ExpertGroup(cfg, part, 0, g) for g in range(6)]
    with torch.no_grad():  # drive every token of layer 1 to experts 0 and 1 (group 0 and 1), none to the rest
        router = stage.layers["1"].moe.router
        router.selection_bias.copy_(torch.tensor([10.0, 10.0, 0, 0, 0, 0]))
    calls = []

    def dispatch(layer, group, rows, ids):
        calls.append((layer, group, rows.shape[0]))
        return groups[group](layer, rows, ids)

    stage.set_dispatcher(dispatch)
    stage(batch[0], batch[1])
    layer1 = sorted(g for layer, g, _ in calls if layer == 1)
    assert layer1 == [0, 1]
    assert all(n > 0 for _, _, n in calls)
    counts = stage.expert_counts()[1]
    assert counts.tolist()[2:] == [0, 0, 0, 0] and int(counts.sum()) == 2 * batch[0].numel()

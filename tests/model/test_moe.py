"""Top-2 MoE: routing, gates, losses, dropless experts (grouped_mm and the loop agree), and balancing of a router
driven to collapse, by the balancing loss and by the aux-loss-free selection bias."""

from __future__ import annotations

import pytest
import torch

from zoo_node.model import Zen3Config
from zoo_node.model.layers import MoELayer
from zoo_node.model.moe import Expert, experts_forward, grouped_mm_supported, load_balancing_loss, router_z_loss

D, E = 32, 8


def _config(**changes) -> Zen3Config:
    base = dict(
        vocab_size=64, d_model=D, n_layers=1, n_heads=4, n_kv_heads=2, max_seq_len=64, moe_layers=(0,),
        n_experts=E, top_k=2, expert_ffn_dim=48, router_aux_loss_coef=0.01, router_z_loss_coef=0.001,
    )  # fmt: skip
    return Zen3Config(**{**base, **changes})


def _layer(**changes) -> MoELayer:
    torch.manual_seed(0)
    layer = MoELayer(_config(**changes), 0)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return layer


def test_routing_top2_renormalised_gates_and_counts():
    layer = _layer()
    x = torch.randn(50, D)
    routing = layer.router(x)
    torch.testing.assert_close(routing.gates.sum(-1), torch.ones(50))
    assert torch.equal(routing.experts, routing.probs.topk(2, dim=-1).indices)
    top2 = routing.probs.topk(2).values
    torch.testing.assert_close(routing.gates, top2 / top2.sum(-1, keepdim=True))
    assert routing.counts.tolist() == torch.bincount(routing.experts.flatten(), minlength=E).tolist()
    # The layer output is the gate-weighted sum of each token's two experts.
    out, _ = layer(x[None])
    experts = list(layer.experts)
    expected = torch.stack(
        [sum(routing.gates[t, j] * experts[int(routing.experts[t, j])](x[t]) for j in range(2)) for t in range(50)]
    )
    torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(layer.last_counts, routing.counts)


def test_losses():
    layer = _layer()
    routing = layer.router(torch.randn(64, D))
    n = routing.experts.numel()
    fraction = torch.bincount(routing.experts.flatten(), minlength=E).float() / n
    torch.testing.assert_close(load_balancing_loss(routing), E * (fraction * routing.probs.mean(0)).sum())
    torch.testing.assert_close(router_z_loss(routing), torch.logsumexp(routing.logits, -1).square().mean())
    # Perfect balance gives 1.0; every token on experts 0 and 1 with probability 1/2 each gives E/2.
    uniform = routing.probs.new_full((64, E), 1.0 / E)
    routing.probs = uniform
    routing.counts = torch.full((E,), n // E)
    assert float(load_balancing_loss(routing)) == pytest.approx(1.0)
    routing.probs = torch.zeros(64, E).index_fill_(1, torch.tensor([0, 1]), 0.5)
    routing.counts = torch.tensor([64, 64] + [0] * (E - 2))
    assert float(load_balancing_loss(routing)) == pytest.approx(E / 2)
    _, aux = _layer(router_aux_loss_coef=0.5, router_z_loss_coef=0.25)(torch.randn(1, 64, D))
    assert aux.requires_grad


@pytest.mark.parametrize("counts", [[5, 0, 7, 1, 0, 9, 2, 4], [0] * 7 + [12], [3] * 8])
def test_grouped_mm_equals_loop_forward_and_backward(counts):
    experts = [Expert(D, 48) for _ in range(E)]
    rows = torch.randn(sum(counts), D, requires_grad=True)
    assert grouped_mm_supported(rows, experts[0])
    grad = torch.randn(sum(counts), D)
    results = {}
    for backend in ("grouped_mm", "loop"):
        for e in experts:
            e.zero_grad(set_to_none=True)
        rows.grad = None
        out = experts_forward(rows, experts, counts, backend)
        out.backward(grad)
        results[backend] = (out.detach(), rows.grad, [e.w_gate_up.weight.grad for e in experts])
    a, b = results["grouped_mm"], results["loop"]
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-6)
    for ga, gb, c in zip(a[2], b[2], counts, strict=True):
        if c:
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)
        else:  # an expert with no rows gets a zero gradient from grouped_mm and none from the loop
            assert gb is None and (ga is None or not ga.any())


def test_sum_backward_through_grouped_mm():
    """grouped_mm's own backward rejects the stride-0 gradient of `.sum()`; ours makes it contiguous."""
    experts = [Expert(D, 48) for _ in range(E)]
    rows = torch.randn(16, D, requires_grad=True)
    experts_forward(rows, experts, [2] * 8, "grouped_mm").sum().backward()
    assert rows.grad is not None


def test_float64_falls_back_to_the_loop():
    experts = [Expert(D, 48).double() for _ in range(E)]
    rows = torch.randn(10, D, dtype=torch.float64)
    assert not grouped_mm_supported(rows, experts[0])
    out = experts_forward(rows, experts, [10] + [0] * 7)
    torch.testing.assert_close(out, experts[0](rows))


def _collapsed_layer(**changes) -> tuple[MoELayer, torch.Tensor]:
    """A layer whose router sends every token to experts 0 and 1, and inputs sharing a common direction."""
    layer = _layer(**changes)
    gen = torch.Generator().manual_seed(3)
    common = torch.randn(D, generator=gen)
    x = torch.randn(512, D, generator=gen) + common
    with torch.no_grad():
        layer.router.weight[:2] += 0.5 * common / common.norm()
    return layer, x


def _max_load(layer: MoELayer, x: torch.Tensor) -> float:
    """The largest share of assignments any expert gets (measured in eval mode: no load is recorded)."""
    training = layer.training
    layer.eval()
    with torch.no_grad():
        counts = layer.router(x).counts.float()
    layer.train(training)
    return float(counts.max() / counts.sum())


def test_balancing_loss_pushes_a_collapsed_router_back_toward_balance():
    layer, x = _collapsed_layer(router_aux_loss_coef=1.0, router_z_loss_coef=0.0)
    assert _max_load(layer, x) > 0.45  # collapsed: experts 0 and 1 take nearly everything (balance is 1/8)
    with torch.no_grad():
        start = float(load_balancing_loss(layer.router(x)))
    opt = torch.optim.Adam(layer.router.parameters(), lr=0.02)
    for _ in range(80):
        opt.zero_grad()
        _, aux = layer(x[None])
        aux.backward()
        opt.step()
    assert _max_load(layer, x) < 0.2
    with torch.no_grad():
        assert float(load_balancing_loss(layer.router(x))) < 0.5 * start


def test_selection_bias_balances_without_a_loss():
    layer, x = _collapsed_layer(router_bias_update_rate=0.005)
    layer.train()
    start_gates = layer.router(x).probs.detach()
    assert _max_load(layer, x) > 0.45
    loads = []
    for step in range(300):
        with torch.no_grad():
            layer.router(x)  # routing is all the bias update needs
        layer.router.update_selection_bias(0.005)
        if step >= 250:
            loads.append(_max_load(layer, x))
    # The sign update keeps circling near balance (1/8); its mean over the last steps is what counts.
    assert sum(loads) / len(loads) < 0.3
    assert layer.router.load.sum() == 0  # the counts since the last update were consumed
    # The bias steers selection only: the router's probabilities (and so gate values) are untouched.
    torch.testing.assert_close(layer.router(x).probs, start_gates)
    assert "router.selection_bias" in layer.state_dict() and "router.load" not in layer.state_dict()

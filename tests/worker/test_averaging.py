"""Averaging through real hivemind averagers (their own processes and p2pd daemons, on loopback): a contribution
with NaN is refused and the others average without it; a part of the wrong size is refused too; under every lossy
wire compression each member ends the round with the same bits (replicas that start equal stay equal)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import hivemind
import pytest
import torch

from zoo_node.worker.averaging import RefusedContribution, check_part, make_averager

pytestmark = pytest.mark.slow


def test_check_part_refuses_wrong_sizes_non_finite_values_and_bad_weights():
    check_part(torch.ones(4), torch.Size([4]), 2.0)
    with pytest.raises(RefusedContribution, match="shape"):
        check_part(torch.ones(5), torch.Size([4]), 1.0)
    with pytest.raises(RefusedContribution, match="NaN or Inf"):
        check_part(torch.tensor([1.0, float("inf"), 0.0, 0.0]), torch.Size([4]), 1.0)
    for weight in (-1.0, float("nan"), float("inf")):
        with pytest.raises(RefusedContribution, match="weight"):
            check_part(torch.ones(4), torch.Size([4]), weight)


def _swarm(size: int) -> list[hivemind.DHT]:
    first = hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"], client_mode=False)
    return [first] + [
        hivemind.DHT(
            start=True,
            initial_peers=[str(m) for m in first.get_visible_maddrs()],
            host_maddrs=["/ip4/127.0.0.1/tcp/0"],
            client_mode=False,
        )
        for _ in range(size - 1)
    ]


def _average(dhts, grads: list[list[torch.Tensor]], compression: str, prefix: str):
    """One round over one averager per DHT; returns (each member's gathered dict or exception, averaged gradients)."""
    averagers = []
    try:
        for dht, tensors in zip(dhts, grads, strict=True):
            params = [torch.nn.Parameter(torch.zeros_like(g)) for g in tensors]
            for p, g in zip(params, tensors, strict=True):
                p.grad = g.clone()
            averager = make_averager(
                params,
                dht=dht,
                prefix=prefix,
                compression=compression,
                powersgd_rank=2,
                matchmaking_time_s=2.0,
                averaging_timeout_s=20.0,
                client_mode=False,
                state_provider=lambda: ({}, []),
            )
            averager.local_samples_accumulated, averager.local_times_accumulated = 4, 1
            averagers.append(averager)

        def step(averager):
            control = averager.step(wait=False, timeout=30, gather={"samples": 4})
            try:
                return control.result(60)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(len(averagers)) as pool:
            results = list(pool.map(step, averagers))
        averaged = []
        for averager in averagers:
            with averager.use_averaged_gradients() as tensors:
                averaged.append([t.clone() for t in tensors])
        return results, averaged
    finally:
        for averager in averagers:
            averager.shutdown()


def test_a_nan_contribution_is_refused_and_the_honest_peers_average_without_it():
    dhts = _swarm(3)
    values = [1.0, 3.0, float("nan")]  # the third peer's gradients blew up
    try:
        results, averaged = _average(dhts, [[torch.full((3000,), v)] for v in values], "none", "avgtest")
        for result, (grad,) in zip(results[:2], averaged[:2], strict=True):
            assert isinstance(result, dict) and len(result) == 3, result  # all three matched into one group
            # Refused: the NaN peer's parts are not in anyone's average; the honest ones meet in the middle.
            torch.testing.assert_close(grad, torch.full_like(grad, 2.0), rtol=0, atol=1e-6)
    finally:
        for dht in dhts:
            dht.shutdown()


@pytest.mark.parametrize("compression", ["fp16", "uniform8bit", "quantile8bit", "powersgd"])
def test_every_member_gets_the_same_bits_under_lossy_compression(compression):
    dhts = _swarm(3)
    generator = torch.Generator().manual_seed(0)
    # A matrix (PowerSGD compresses it) and a vector; values spread over decades, as gradients are.
    grads = [
        [
            torch.randn(96, 64, generator=generator)
            * 10.0 ** torch.randint(-6, 0, (96, 64), generator=generator).float(),
            torch.randn(5000, generator=generator),
        ]
        for _ in dhts
    ]
    try:
        results, averaged = _average(dhts, grads, compression, f"bits_{compression}")
        assert all(isinstance(r, dict) and len(r) == 3 for r in results), results
        for other in averaged[1:]:
            for mine, theirs in zip(averaged[0], other, strict=True):
                assert torch.equal(mine, theirs), f"{compression}: members hold different averages"
        # The mean, up to the codec's error (twice: the parts in, the average out). PowerSGD is low-rank on purpose.
        tolerance = {"fp16": 0.01, "uniform8bit": 0.3, "quantile8bit": 0.3, "powersgd": None}[compression]
        if tolerance is not None:
            exact = [torch.stack(ts).mean(0) for ts in zip(*grads, strict=True)]
            for got, want in zip(averaged[0], exact, strict=True):
                error = float((got - want).norm() / want.norm())
                assert error < tolerance, f"{compression}: {error:.1%} off the mean"
    finally:
        for dht in dhts:
            dht.shutdown()

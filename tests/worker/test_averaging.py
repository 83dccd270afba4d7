"""Averaging through real hivemind averagers (their own processes and p2pd daemons, on loopback): a contribution
with NaN is refused and the others average without it; a part of the wrong size is refused too."""

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


def test_a_nan_contribution_is_refused_and_the_honest_peers_average_without_it():
    first = hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"], client_mode=False)
    dhts = [first] + [
        hivemind.DHT(
            start=True,
            initial_peers=[str(m) for m in first.get_visible_maddrs()],
            host_maddrs=["/ip4/127.0.0.1/tcp/0"],
            client_mode=False,
        )
        for _ in range(2)
    ]
    values = [1.0, 3.0, float("nan")]  # the third peer's gradients blew up
    params, averagers = [], []
    try:
        for dht, value in zip(dhts, values, strict=True):
            p = torch.nn.Parameter(torch.zeros(3000))
            p.grad = torch.full_like(p, value)
            averager = make_averager(
                [p],
                dht=dht,
                prefix="avgtest",
                compression="none",
                powersgd_rank=1,
                matchmaking_time_s=2.0,
                averaging_timeout_s=20.0,
                client_mode=False,
                state_provider=lambda: ({}, []),
            )
            averager.local_samples_accumulated, averager.local_times_accumulated = 4, 1
            params.append(p)
            averagers.append(averager)

        def step(averager):
            control = averager.step(wait=False, timeout=30, gather={"samples": 4})
            try:
                return control.result(60)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(step, averagers))
        for averager, result in zip(averagers[:2], results[:2], strict=True):
            assert isinstance(result, dict) and len(result) == 3, result  # all three matched into one group
            with averager.use_averaged_gradients() as grads:
                averaged = grads[0].clone()
            # Refused: the NaN peer's parts are not in anyone's average; the honest ones meet in the middle.
            torch.testing.assert_close(averaged, torch.full_like(averaged, 2.0), rtol=0, atol=1e-6)
    finally:
        for averager in averagers:
            averager.shutdown()
        for dht in dhts:
            dht.shutdown()

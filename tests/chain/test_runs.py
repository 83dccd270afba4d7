"""RunRegistry: creating, listing, pausing and closing runs."""

from __future__ import annotations

import pytest

from zoo_node.chain.errors import ContractRevert
from zoo_node.chain.run_registry import RunStatus

MIN = 10**18


def _create(devchain, creator=1, coordinator=2, funding=5 * MIN, spec=b"\x01" * 32):
    return devchain.client(devchain.accounts[creator]).runs.create_run(
        spec_hash=spec, coordinator=devchain.accounts[coordinator].address, epoch_length_s=60,
        reward_per_epoch=MIN, funding=funding,
    )  # fmt: skip


def test_create_lists_and_funds_the_run(devchain):
    run_a, _ = _create(devchain)
    run_b, _ = _create(devchain, spec=b"\x02" * 32)
    client = devchain.client()
    assert client.runs.active_run_ids() == [run_a, run_b] == [1, 2]
    run = client.runs.get_run(run_a)
    assert run.spec_hash == b"\x01" * 32 and run.coordinator == devchain.accounts[2].address
    assert run.creator == devchain.accounts[1].address and run.status is RunStatus.ACTIVE
    assert run.epoch_end(2) == run.start_time + 120
    pool = client.rewards.pool(run_a)
    assert pool.balance == pool.unallocated == 5 * MIN and pool.epoch == 0
    assert client.runs.get_run(99) is None


def test_invalid_runs_are_refused(devchain):
    with pytest.raises(ContractRevert, match="no funding sent"):
        _create(devchain, funding=0)
    with pytest.raises(ContractRevert, match="spec hash is zero"):
        _create(devchain, spec=b"\x00" * 32)


def test_only_the_coordinator_pauses_resumes_and_closes(devchain):
    run_id, _ = _create(devchain)
    for stranger in (1, 3):
        with pytest.raises(ContractRevert, match="NotCoordinator"):
            devchain.client(devchain.accounts[stranger]).runs.pause_run(run_id)
    coordinator = devchain.client(devchain.accounts[2])
    coordinator.runs.pause_run(run_id)
    assert coordinator.runs.active_run_ids() == []
    assert coordinator.runs.get_run(run_id).status is RunStatus.PAUSED
    coordinator.runs.resume_run(run_id)
    assert [r.run_id for r in coordinator.runs.active_runs()] == [run_id]
    with pytest.raises(ContractRevert, match="NotCoordinator"):
        devchain.client(devchain.accounts[1]).runs.close_run(run_id)
    coordinator.runs.close_run(run_id)
    assert coordinator.runs.get_run(run_id).status is RunStatus.CLOSED
    with pytest.raises(ContractRevert, match="BadStatus"):
        coordinator.runs.resume_run(run_id)

"""A worker drained with SIGTERM checkpoints its shards; started again on the same home it resumes from them."""

from __future__ import annotations

import signal

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.polling import wait_until
from tests.worker.conftest import small_spec
from zoo_node.worker.checkpoint import checkpoint_dir
from zoo_node.worker.shards import build_backend

pytestmark = pytest.mark.slow

ALL = ["stage/0", "stage/1", "experts/0/0", "experts/0/1", "experts/1/0", "experts/1/1"]


def _rounds(worker, run: str) -> dict[str, int]:
    return {shard: info["round"] for shard, info in worker.status(run).get("shards", {}).items()}


def test_a_drained_worker_checkpoints_and_resumes_from_its_checkpoint(swarm_factory):
    spec = small_spec("resume", max_steps=3, data={"micro_batches_per_step": 1}, averaging={"target_batch_size": 4})
    swarm = swarm_factory(spec)
    first = swarm.start("solo", ALL)
    first.wait_started()
    wait_until(lambda: (first.status(spec.name).get("driver") or {}).get("finished"), 180, "3 steps")
    # (Rounds follow samples, not steps: a round may take in two steps' micro-batches.)
    wait_until(lambda: min(_rounds(first, spec.name).values()) >= 1, 60, "every shard to apply a round")
    first.kill(signal.SIGTERM)
    assert first.proc.wait(60) == 0
    rounds = _rounds(first, spec.name)
    saved = {s: load_file(str(checkpoint_dir(first.home, spec.name, s) / "model.safetensors")) for s in ALL}
    trained = saved["stage/1"]

    # The same home again: the shards come back at their rounds, with the trained weights (the driver is done).
    again = swarm.start("solo-again", ALL, home=first.home)
    started = again.wait_started()
    assert {s: started["shards"][s]["round"] for s in ALL} == rounds
    again.kill(signal.SIGTERM)
    assert again.proc.wait(60) == 0
    for shard in ALL:
        resaved = load_file(str(checkpoint_dir(first.home, spec.name, shard) / "model.safetensors"))
        assert set(resaved) == set(saved[shard])
        assert all(torch.equal(resaved[k], saved[shard][k]) for k in resaved), shard
    # And they are trained weights, not the seed's (every replica starts from the run's model_seed).
    seeded = build_backend(spec, "stage/1", None).module.state_dict()
    assert any(not torch.equal(seeded[k], trained[k]) for k in trained)

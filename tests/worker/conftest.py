"""Fixtures of the data-plane tests: a small run spec and a swarm of real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker.swarm import Swarm
from zoo_node.runspec import RunSpec, parse_runspec


def small_spec(name: str = "t", **overrides: object) -> RunSpec:
    """zen-3-tiny-moe in 2 stages x 2 expert groups, micro-batches of 4 x 64 tokens, fast timeouts for loopback."""
    data = {
        "name": name,
        "model": "zen-3-tiny-moe",
        "partition": {"stages": 2, "expert_groups": 2},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "averaging": {"target_batch_size": 16, "matchmaking_time_s": 1.0, "averaging_timeout_s": 10.0},
        "data": {"seq_len": 64, "micro_batch_size": 4, "micro_batches_per_step": 2},
        "routing": {"call_timeout_s": 10.0, "announce_period_s": 1.0, "record_ttl_s": 4.0, "max_attempts": 4},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return parse_runspec(data)


@pytest.fixture
def swarm_factory(tmp_path: Path, make_home):
    swarms: list[Swarm] = []

    def make(spec: RunSpec) -> Swarm:
        swarm = Swarm(tmp_path, make_home, spec)
        swarms.append(swarm)
        return swarm

    yield make
    for swarm in swarms:
        swarm.close()

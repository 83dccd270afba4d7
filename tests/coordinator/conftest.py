"""Fixtures of the coordinator's tests: the run spec, its FLOPs table (computed once), coordinator processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.coordinator.harness import (
    CoordinatorProcess,
    configure_coordinator,
    seed_flops_table,
    write_run_file,
)
from zoo_node.runspec import RunSpec, dump_runspec

SPEC = RunSpec(name="coord-test", model="zen-3-tiny")


@pytest.fixture(scope="session")
def flops_table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """FLOPs per sample of SPEC's shards, computed by zoo_node.model in a child interpreter (as the daemon does)."""
    from zoo_node.coordinator.settlement import load_flops_table

    path = tmp_path_factory.mktemp("spec") / "spec.toml"
    path.write_text(dump_runspec(SPEC))
    return load_flops_table(path)


@pytest.fixture
def coordinator_factory(
    make_home, password_file: Path, flops_table: dict[str, int], tmp_path: Path
) -> Iterator[Callable[..., CoordinatorProcess]]:
    """`make(chain, name="coord", **settlement)`: a coordinator home on `chain` with a run file; not started."""
    started: list[CoordinatorProcess] = []

    def make(chain, name: str = "coord", spec: RunSpec = SPEC, **settlement) -> CoordinatorProcess:
        home, _ = make_home(name)
        configure_coordinator(home, chain)
        run_file = write_run_file(tmp_path / f"{name}-run.toml", spec, **settlement)
        if spec == SPEC:
            seed_flops_table(home, run_file, flops_table)
        process = CoordinatorProcess(home, run_file, password_file, tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop(timeout_s=10)

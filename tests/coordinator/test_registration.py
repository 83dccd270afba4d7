"""The run is registered on chain once: a restart, and a crash between `createRun` and remembering its id, find the
same run instead of creating (and funding) another; a run of another spec or coordinator is not adopted."""

from __future__ import annotations

import json

import pytest

from tests.coordinator.conftest import SPEC
from tests.coordinator.harness import write_run_file
from zoo_node.coordinator.registration import (
    CREATE_INTENT_KEY,
    RUN_ID_KEY,
    RunRegistrationError,
    ensure_run,
)
from zoo_node.coordinator.runfile import load_run_file
from zoo_node.coordinator.store import CoordinatorStore
from zoo_node.runspec import RunSpec

COIN = 10**18


@pytest.fixture
def setup(devchain, tmp_path):
    run_file = load_run_file(write_run_file(tmp_path / "run.toml", SPEC, epoch_length_s=120, reward_per_epoch="2",
                                            funding="6"))  # fmt: skip
    store = CoordinatorStore(tmp_path / "coordinator.sqlite3")
    yield devchain.client(devchain.accounts[3]), store, run_file
    store.close()


def test_the_run_is_created_once_with_the_spec_hash_and_terms(setup) -> None:
    client, store, run_file = setup
    before = client.runs.run_count()
    run, created = ensure_run(client, store, run_file)
    assert created and client.runs.run_count() == before + 1
    assert run.spec_hash == bytes.fromhex(SPEC.content_hash) and run.coordinator == client.account.address
    assert (run.epoch_length_s, run.reward_per_epoch) == (120, 2 * COIN)
    assert client.rewards.pool(run.run_id).balance == 6 * COIN
    again, created_again = ensure_run(client, store, run_file)  # a restart
    assert (again.run_id, created_again) == (run.run_id, False) and client.runs.run_count() == before + 1


def test_a_crash_after_create_run_finds_the_run_instead_of_a_second_one(setup) -> None:
    client, store, run_file = setup
    # What a coordinator killed right after sending createRun leaves: the journaled intent, no run id.
    store.set_meta(CREATE_INTENT_KEY, json.dumps({"spec_hash": run_file.spec_hash.hex(),
                                                   "from_block": client.block_number()}))  # fmt: skip
    sent, _ = client.runs.create_run(spec_hash=run_file.spec_hash, coordinator=client.account.address,
                                     epoch_length_s=120, reward_per_epoch=2 * COIN, funding=6 * COIN)  # fmt: skip
    count = client.runs.run_count()
    run, created = ensure_run(client, store, run_file)
    assert (run.run_id, created) == (sent, False) and client.runs.run_count() == count
    assert store.get_meta(RUN_ID_KEY) == str(sent) and store.get_meta(CREATE_INTENT_KEY) is None


def test_a_run_of_another_spec_or_coordinator_is_refused(setup, devchain, tmp_path) -> None:
    client, store, run_file = setup
    other = RunSpec(name="someone-else")
    theirs, _ = client.runs.create_run(spec_hash=bytes.fromhex(other.content_hash), coordinator=client.account.address,
                                       epoch_length_s=60, reward_per_epoch=COIN, funding=COIN)  # fmt: skip
    with pytest.raises(RunRegistrationError, match="is not the run of this spec"):
        ensure_run(client, store, run_file, adopt_run_id=theirs)
    foreign, _ = client.runs.create_run(spec_hash=run_file.spec_hash, coordinator=devchain.accounts[4].address,
                                        epoch_length_s=60, reward_per_epoch=COIN, funding=COIN)  # fmt: skip
    with pytest.raises(RunRegistrationError, match=f"coordinated by {devchain.accounts[4].address}"):
        ensure_run(client, store, run_file, adopt_run_id=foreign)
    with pytest.raises(RunRegistrationError, match="no such run"):
        ensure_run(client, store, run_file, adopt_run_id=10_000)
    assert store.get_meta(RUN_ID_KEY) is None


def test_not_enough_coin_for_the_funding_is_a_clear_error(setup, devchain) -> None:
    client, store, run_file = setup
    devchain.fund(client.account.address, 5 * COIN)
    with pytest.raises(RunRegistrationError, match="the run's funding is 6 coins"):
        ensure_run(client, store, run_file)

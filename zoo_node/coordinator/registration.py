"""Registering the run on chain exactly once: `createRun` with the spec's hash, the coordinator's address, the epoch
length, the reward per epoch and the funding.

The run id is kept in the coordinator's store. Before `createRun` is sent, the intent (spec hash and the block to
search from) is journaled; a coordinator killed between the send and storing the id finds its run on restart in the
`RunCreated` events instead of creating (and funding) a second one.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from web3 import Web3

from zoo_node.errors import ZooError

if TYPE_CHECKING:
    from zoo_node.chain.client import ChainClient
    from zoo_node.chain.run_registry import RunInfo
    from zoo_node.coordinator.runfile import RunFile
    from zoo_node.coordinator.store import CoordinatorStore

logger = logging.getLogger(__name__)
RUN_ID_KEY = "run_id"
CREATE_INTENT_KEY = "create_run_intent"


class RunRegistrationError(ZooError):
    """The run cannot be registered or adopted (wrong spec, another coordinator, not enough coin)."""


def _check_ours(run: RunInfo, run_file: RunFile, coordinator: str) -> None:
    if run.spec_hash != run_file.spec_hash:
        raise RunRegistrationError(
            f"run {run.run_id} on chain has spec hash {Web3.to_hex(run.spec_hash)}, but {run_file.path} hashes to "
            f"{Web3.to_hex(run_file.spec_hash)}: this is not the run of this spec"
        )
    if run.coordinator.lower() != coordinator.lower():
        raise RunRegistrationError(
            f"run {run.run_id} is coordinated by {run.coordinator}, not by this home's operator {coordinator}"
        )


def _find_created(client: ChainClient, run_file: RunFile, coordinator: str, from_block: int) -> int | None:
    events = client.runs.events(
        "RunCreated",
        from_block,
        argument_filters={"specHash": run_file.spec_hash, "coordinator": Web3.to_checksum_address(coordinator)},
    )
    return int(events[-1]["runId"]) if events else None


def ensure_run(
    client: ChainClient, store: CoordinatorStore, run_file: RunFile, *, adopt_run_id: int | None = None
) -> tuple[RunInfo, bool]:
    """The run of `run_file` on chain, created if this coordinator has none yet; returns (run, created now).

    `adopt_run_id`: take over a run created elsewhere (its spec hash and coordinator must be this one's).
    """
    assert client.account is not None, "the coordinator needs its operator account"
    coordinator = client.account.address
    stored = store.get_meta(RUN_ID_KEY)
    if stored is not None:
        if adopt_run_id is not None and adopt_run_id != int(stored):
            raise RunRegistrationError(
                f"this coordinator home already coordinates run {stored}; --run-id {adopt_run_id} needs a new home"
            )
        run = client.runs.get_run(int(stored))
        if run is None:
            raise RunRegistrationError(
                f"run {stored} (from {store.path}) does not exist on chain: was the chain reset? use a new home"
            )
        _check_ours(run, run_file, coordinator)
        return run, False
    if adopt_run_id is not None:
        run = client.runs.get_run(adopt_run_id)
        if run is None:
            raise RunRegistrationError(f"--run-id {adopt_run_id}: no such run on chain")
        _check_ours(run, run_file, coordinator)
        store.set_meta(RUN_ID_KEY, str(run.run_id))
        return run, False

    intent = store.get_meta(CREATE_INTENT_KEY)
    if intent is not None:
        recorded = json.loads(intent)
        if recorded["spec_hash"] == run_file.spec_hash.hex():
            found = _find_created(client, run_file, coordinator, int(recorded["from_block"]))
            if found is not None:
                logger.info("found run %d created before a restart", found)
                store.set_meta(RUN_ID_KEY, str(found))
                store.delete_meta(CREATE_INTENT_KEY)
                run = client.runs.get_run(found)
                assert run is not None
                return run, False

    settlement = run_file.settlement
    balance = client.balance(coordinator)
    if balance < settlement.funding_wei:
        raise RunRegistrationError(
            f"{coordinator} holds {Web3.from_wei(balance, 'ether')} coins; the run's funding is "
            f"{settlement.funding} coins (plus gas)"
        )
    store.set_meta(
        CREATE_INTENT_KEY, json.dumps({"spec_hash": run_file.spec_hash.hex(), "from_block": client.block_number()})
    )
    run_id, _ = client.runs.create_run(
        spec_hash=run_file.spec_hash,
        coordinator=coordinator,
        epoch_length_s=settlement.epoch_length_s,
        reward_per_epoch=settlement.reward_per_epoch_wei,
        funding=settlement.funding_wei,
    )
    store.set_meta(RUN_ID_KEY, str(run_id))
    store.delete_meta(CREATE_INTENT_KEY)
    run = client.runs.get_run(run_id)
    assert run is not None
    logger.info("created run %d (spec %s) funded with %s coins", run_id, run_file.spec.content_hash, settlement.funding)
    return run, True

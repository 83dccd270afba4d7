"""Typed client of the RunRegistry: create, pause, resume and close runs; list the active ones."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.types import TxReceipt

from zoo_node.chain.contract import ContractClient
from zoo_node.chain.errors import ChainError, ContractRevert


class RunStatus(enum.IntEnum):
    NONE = 0
    ACTIVE = 1
    PAUSED = 2
    CLOSED = 3


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    spec_hash: bytes
    creator: str
    coordinator: str
    epoch_length_s: int
    start_time: int
    reward_per_epoch: int
    status: RunStatus

    def epoch_end(self, epoch: int) -> int:
        """Unix time at which `epoch` (1-based) ends and its root may be posted."""
        return self.start_time + epoch * self.epoch_length_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "spec_hash": Web3.to_hex(self.spec_hash),
            "creator": self.creator,
            "coordinator": self.coordinator,
            "epoch_length_s": self.epoch_length_s,
            "start_time": self.start_time,
            "reward_per_epoch_wei": str(self.reward_per_epoch),
            "status": self.status.name.lower(),
        }


class RunRegistryClient(ContractClient):
    contract_name = "RunRegistry"

    def get_run(self, run_id: int) -> RunInfo | None:
        try:
            raw = self._read("getRun", run_id)
        except ContractRevert as exc:
            if exc.error == "UnknownRun":
                return None
            raise
        spec, creator, coordinator, epoch_length, start, reward, status = raw
        return RunInfo(run_id, bytes(spec), creator, coordinator, epoch_length, start, reward, RunStatus(status))

    def run_count(self) -> int:
        return self._read("runCount")

    def active_run_ids(self) -> list[int]:
        return list(self._read("activeRunIds"))

    def active_runs(self) -> list[RunInfo]:
        return [run for run_id in self.active_run_ids() if (run := self.get_run(run_id)) is not None]

    def create_run(
        self, *, spec_hash: bytes, coordinator: str, epoch_length_s: int, reward_per_epoch: int, funding: int
    ) -> tuple[int, TxReceipt]:
        """Create a run funded with `funding` wei; returns (run id, receipt)."""
        receipt = self._send("createRun", spec_hash, coordinator, epoch_length_s, reward_per_epoch, value=funding)
        created = self.events_in_receipt("RunCreated", receipt)
        if not created:
            raise ChainError("createRun: the receipt has no RunCreated event")
        return created[0]["runId"], receipt

    def pause_run(self, run_id: int) -> TxReceipt:
        return self._send("pauseRun", run_id)

    def resume_run(self, run_id: int) -> TxReceipt:
        return self._send("resumeRun", run_id)

    def close_run(self, run_id: int) -> TxReceipt:
        return self._send("closeRun", run_id)

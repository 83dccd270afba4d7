"""The coordinator's run file: a run spec (`zoo_node.runspec`) plus a `[settlement]` table with the run's on-chain
terms.

    name = "testnet"            # ... the run spec's keys (docs/run-spec.md)
    [settlement]
    epoch_length_s = 3600       # seconds per reward epoch
    reward_per_epoch = "10"     # coins shared by verified FLOPs each epoch
    funding = "100"             # coins sent with createRun (the run's reward pool)
    min_nodes = 2               # distinct registered nodes that must witness an averaging round

The spec's content hash (without `[settlement]`) is what the RunRegistry records; the settlement terms are recorded
by the chain itself (epoch length and reward per epoch are fields of the run, funding is the pool's balance), so
they are not part of the hash.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zoo_node.errors import ZooError
from zoo_node.runspec import RunSpec, dump_runspec, parse_runspec

SETTLEMENT_TABLE = "settlement"
WEI_PER_COIN = 10**18


class RunFileError(ZooError):
    """A run file is missing, not TOML, or its spec or `[settlement]` table is invalid."""


def coins_to_wei(value: Any, what: str) -> int:
    """ "1.5" or 1.5 (coins) -> wei; ValueError naming `what` when it is not a positive amount."""
    try:
        coins = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a number of coins") from None
    wei = coins * WEI_PER_COIN
    if not coins.is_finite() or coins <= 0 or wei != wei.to_integral_value():
        raise ValueError(f"{what}: {value!r} must be a positive number of coins with at most 18 decimals")
    return int(wei)


class SettlementSection(BaseModel):
    """The `[settlement]` table: the run's terms on chain and the witness rule of settlement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epoch_length_s: int = Field(3600, ge=1, lt=2**64, description="Seconds per reward epoch (on chain).")
    reward_per_epoch: str = Field("10", description="Coins shared among owners by verified FLOPs each epoch.")
    funding: str = Field("100", description="Coins sent with createRun: the run's reward pool.")
    min_nodes: int = Field(2, ge=1, description="Distinct registered nodes that must be in an averaging group.")

    @field_validator("reward_per_epoch", "funding", mode="before")
    @classmethod
    def _coins(cls, value: Any, info) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"a number of coins, got {value!r}")
        coins_to_wei(value, info.field_name)
        return str(value)

    @property
    def reward_per_epoch_wei(self) -> int:
        return coins_to_wei(self.reward_per_epoch, "reward_per_epoch")

    @property
    def funding_wei(self) -> int:
        return coins_to_wei(self.funding, "funding")


@dataclass(frozen=True)
class RunFile:
    """A loaded run file: the validated spec, its settlement terms, and where it came from."""

    path: Path
    spec: RunSpec
    settlement: SettlementSection

    @property
    def spec_hash(self) -> bytes:
        """The 32 bytes the RunRegistry records."""
        return bytes.fromhex(self.spec.content_hash)

    @property
    def spec_toml(self) -> str:
        """The spec alone (no `[settlement]`), as TOML: what nodes fetch and hash-check."""
        return dump_runspec(self.spec)


def parse_run_file(data: dict[str, Any], source: str) -> RunFile:
    """Split a parsed run file into spec and settlement terms and validate both."""
    data = dict(data)
    table = data.pop(SETTLEMENT_TABLE, {})
    if not isinstance(table, dict):
        raise RunFileError(f"{source}: [{SETTLEMENT_TABLE}] must be a table")
    try:
        settlement = SettlementSection.model_validate(table)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(table)"
        raise RunFileError(f"{source}: {SETTLEMENT_TABLE}.{where}: {err['msg']}") from None
    if settlement.reward_per_epoch_wei > settlement.funding_wei:
        raise RunFileError(
            f"{source}: {SETTLEMENT_TABLE}.funding ({settlement.funding} coins) does not cover one epoch's reward "
            f"({settlement.reward_per_epoch} coins)"
        )
    spec = parse_runspec(data, source)
    return RunFile(Path(source), spec, settlement)


def load_run_file(path: Path | str) -> RunFile:
    """Read and validate a run file; `RunFileError` / `RunSpecError` name the file, key and reason."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read the run file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_run_file(data, str(path))

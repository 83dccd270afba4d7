"""The run spec: what a training run is (model, partition, optimizer, averaging, data), loaded from TOML.

Its content hash (sha256 of the canonical JSON of the validated spec) is what the RunRegistry records on chain, so
every node, the coordinator and the chain agree on one run. Importable without torch or hivemind.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zoo_node.errors import ZooError

Compression = Literal["none", "fp16", "uniform8bit", "quantile8bit", "powersgd"]


class RunSpecError(ZooError):
    """A run spec file is missing, not TOML, or not a valid run spec."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionSpec(_Section):
    """How the model is cut into shards: pipeline stages, and expert groups per stage for MoE presets."""

    stages: int = Field(2, ge=1, description="Number of pipeline stages (`stage/<s>` shards).")
    expert_groups: int = Field(
        2, ge=1, description="Expert groups per stage (`experts/<s>/<g>` shards); MoE presets only."
    )


class OptimizerSpec(_Section):
    """The local optimizer every replica applies to the averaged gradients."""

    name: Literal["adamw", "sgd"] = Field("adamw", description="adamw or sgd.")
    lr: float = Field(3e-3, gt=0, description="Learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the averaged gradient to this global norm.")


class AveragingSpec(_Section):
    """How the replicas of a shard average gradients through hivemind."""

    target_batch_size: int = Field(
        16, ge=1, description="Samples the swarm accumulates for one shard before its replicas average and step."
    )
    compression: Compression = Field("fp16", description="Wire compression of averaged gradients.")
    powersgd_rank: int = Field(4, ge=1, description="Rank of PowerSGD's factors (compression = powersgd).")
    matchmaking_time_s: float = Field(1.5, gt=0, description="How long replicas gather for an averaging group.")
    averaging_timeout_s: float = Field(20.0, gt=0, description="An averaging round that takes longer is abandoned.")
    load_state_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a peer's state when joining.")


class DataSpec(_Section):
    """The data the run trains on, named by content hash."""

    corpus: str = Field("testnet", description="`testnet` (shipped with zoo-node) or a path to a UTF-8 text file.")
    corpus_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the corpus bytes.")
    tokenizer: str = Field("bytes-v1", description="Tokenizer name (see zoo_node.data.tokenizer).")
    tokenizer_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="sha256 of its description.")
    seed: int = Field(0, ge=0, description="Data seed: with (epoch, step, node, micro) it fixes every micro-batch.")
    seq_len: int = Field(64, ge=1, description="Tokens per sequence.")
    micro_batch_size: int = Field(4, ge=1, description="Sequences per micro-batch.")
    micro_batches_per_step: int = Field(2, ge=1, description="Micro-batches a driver sends per local step.")
    epoch_length_steps: int = Field(1000, ge=1, description="Driver steps per data epoch.")


class RoutingSpec(_Section):
    """Timeouts and records of the data plane's RPCs and DHT announcements."""

    call_timeout_s: float = Field(30.0, gt=0, description="Timeout of one forward or backward call to a replica.")
    max_attempts: int = Field(4, ge=1, description="Replicas tried for one call before the micro-batch fails.")
    announce_period_s: float = Field(2.0, gt=0, description="Seconds between a server's DHT announcements.")
    record_ttl_s: float = Field(8.0, gt=0, description="Lifetime of an announcement (a dead server fades after it).")
    activation_ttl_s: float = Field(60.0, gt=0, description="Activations whose backward never comes are dropped after.")
    rebalance_period_s: float = Field(180.0, gt=0, description="How often a worker considers moving to another shard.")
    rebalance_margin: float = Field(
        0.5, ge=0, description="Move only if the swarm's worst shard is below (1 - margin) of this one's coverage."
    )


class RunSpec(_Section):
    """A training run."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_-]+$", description="Run name (DHT key prefix).")
    model: str = Field("zen-3-tiny-moe", description="Model preset (zoo_node.model presets).")
    model_seed: int = Field(0, ge=0, description="Seed of the initial weights (every replica starts equal).")
    max_steps: int | None = Field(None, ge=1, description="Drivers stop after this many local steps.")
    checkpoint_period_s: float = Field(300.0, gt=0, description="Seconds between checkpoints of a worker's shards.")
    partition: PartitionSpec = Field(default_factory=PartitionSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    averaging: AveragingSpec = Field(default_factory=AveragingSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)

    @model_validator(mode="after")
    def _ttl_outlives_announcements(self) -> RunSpec:
        if self.routing.record_ttl_s <= self.routing.announce_period_s:
            raise ValueError("routing.record_ttl_s must be longer than routing.announce_period_s")
        return self

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON: the run's identity on chain."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def shard_names(self, moe: bool = True) -> list[str]:
        """Every shard of the run: `stage/<s>` and, for MoE, `experts/<s>/<g>`."""
        names = [f"stage/{s}" for s in range(self.partition.stages)]
        if moe:
            names += [
                f"experts/{s}/{g}" for s in range(self.partition.stages) for g in range(self.partition.expert_groups)
            ]
        return names


def parse_runspec(data: dict, source: str = "run spec") -> RunSpec:
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise RunSpecError(f"{source}: {where}: {err['msg']}{more}") from None


def load_runspec(path: Path | str) -> RunSpec:
    """Read and validate a run spec TOML file; `RunSpecError` names the file, key and reason."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunSpecError(f"{path}: cannot read the run spec: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunSpecError(f"{path}: not valid TOML: {exc}") from None
    return parse_runspec(data, str(path))


def dump_runspec(spec: RunSpec) -> str:
    """The spec as TOML (loads back to an equal spec with the same hash)."""
    import tomli_w

    return tomli_w.dumps(spec.model_dump(mode="json", exclude_none=True))

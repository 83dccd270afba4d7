"""How a Zen-3 model is cut into shards: pipeline stages (layer ranges) and expert groups per stage.

A `Partition` lists the stages as half-open layer ranges [start, stop) that must cover 0..n_layers-1 exactly once,
in order, and for each stage how many expert groups its MoE layers' experts are split into (contiguous ranges of
expert ids, sizes differing by at most one; zero for a stage without MoE layers). The shards it yields are named
`stage/<s>` and `experts/<s>/<g>` (the names the run spec and the swarm use).
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo_node.model.config import Zen3Config


@dataclass(frozen=True)
class StageSpec:
    """Pipeline stage `index`: layers [start, stop); first holds the embedding, last the final norm, head and loss."""

    index: int
    start: int
    stop: int
    n_stages: int
    expert_groups: int

    @property
    def name(self) -> str:
        return f"stage/{self.index}"

    @property
    def layers(self) -> range:
        return range(self.start, self.stop)

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.n_stages - 1


@dataclass(frozen=True)
class ExpertGroupSpec:
    """Expert group `group` of stage `stage`: experts [expert_start, expert_stop) of every MoE layer in the stage."""

    stage: int
    group: int
    start: int
    stop: int
    expert_start: int
    expert_stop: int
    moe_layers: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"experts/{self.stage}/{self.group}"

    @property
    def experts(self) -> range:
        return range(self.expert_start, self.expert_stop)


ShardSpec = StageSpec | ExpertGroupSpec


@dataclass(frozen=True)
class Partition:
    """Stages as layer ranges and the number of expert groups of each stage; `validate(config)` before use."""

    stages: tuple[tuple[int, int], ...]
    expert_groups: tuple[int, ...] | None = None  # per stage; None: one group per stage that has MoE layers

    @classmethod
    def even(cls, config: Zen3Config, n_stages: int, groups_per_stage: int = 1) -> Partition:
        """`n_stages` stages of (nearly) equal layer counts, each MoE stage split into `groups_per_stage` groups."""
        if not 1 <= n_stages <= config.n_layers:
            raise ValueError(f"stages: {n_stages} stages for {config.n_layers} layers")
        bounds = [round(i * config.n_layers / n_stages) for i in range(n_stages + 1)]
        stages = tuple((bounds[i], bounds[i + 1]) for i in range(n_stages))
        groups = tuple(groups_per_stage if _moe_in(config, a, b) else 0 for a, b in stages)
        return cls(stages, groups).validate(config)

    @classmethod
    def single(cls, config: Zen3Config) -> Partition:
        """The whole model as one stage with one expert group."""
        return cls.even(config, 1)

    def validate(self, config: Zen3Config) -> Partition:
        """Raise ValueError naming `stages` or `expert_groups` unless this partition fits `config`; returns self."""
        stages = tuple(tuple(s) for s in self.stages)
        if not stages:
            raise ValueError("stages: a partition needs at least one stage")
        expected = 0
        for i, stage in enumerate(stages):
            if len(stage) != 2:
                raise ValueError(f"stages[{i}]: {stage!r} is not a (start, stop) layer range")
            start, stop = stage
            if stop <= start:
                raise ValueError(f"stages[{i}]: layer range [{start}, {stop}) is empty")
            if start > expected:
                missing = f"{expected}" if start - expected == 1 else f"{expected}..{start - 1}"
                raise ValueError(f"stages[{i}]: layers {missing} are in no stage (stage {i} starts at {start})")
            if start < expected:
                raise ValueError(
                    f"stages[{i}]: layers {start}..{expected - 1} overlap the previous stage (which ends at {expected})"
                )
            expected = stop
        if expected != config.n_layers:
            if expected < config.n_layers:
                raise ValueError(f"stages: layers {expected}..{config.n_layers - 1} are in no stage")
            raise ValueError(f"stages: the last stage ends at {expected}, beyond the {config.n_layers} layers")
        if config.tie_embeddings and len(stages) > 1:
            raise ValueError("stages: a model with tie_embeddings cannot be split into stages")
        groups = self.groups(config, stages)
        if len(groups) != len(stages):
            raise ValueError(f"expert_groups: {len(groups)} entries for {len(stages)} stages")
        for i, ((start, stop), g) in enumerate(zip(stages, groups, strict=True)):
            if _moe_in(config, start, stop):
                if not 1 <= g <= config.n_experts:
                    raise ValueError(
                        f"expert_groups[{i}]: {g} groups for {config.n_experts} experts (need 1..{config.n_experts})"
                    )
            elif g != 0:
                raise ValueError(f"expert_groups[{i}]: stage {i} has no MoE layers, so it has no expert groups")
        return self

    def groups(self, config: Zen3Config, stages: tuple[tuple[int, int], ...] | None = None) -> tuple[int, ...]:
        stages = self.stages if stages is None else stages
        if self.expert_groups is None:
            return tuple(1 if _moe_in(config, a, b) else 0 for a, b in stages)
        return tuple(self.expert_groups)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def stage(self, config: Zen3Config, index: int) -> StageSpec:
        if not 0 <= index < self.n_stages:
            raise ValueError(f"stage: {index} is not a stage of this partition (0..{self.n_stages - 1})")
        start, stop = self.stages[index]
        return StageSpec(index, start, stop, self.n_stages, self.groups(config)[index])

    def expert_group(self, config: Zen3Config, stage: int, group: int) -> ExpertGroupSpec:
        spec = self.stage(config, stage)
        if not 0 <= group < spec.expert_groups:
            raise ValueError(f"group: stage {stage} has {spec.expert_groups} expert groups, not group {group}")
        lo, hi = expert_range(config.n_experts, spec.expert_groups, group)
        moe_layers = tuple(i for i in spec.layers if config.is_moe_layer(i))
        return ExpertGroupSpec(stage, group, spec.start, spec.stop, lo, hi, moe_layers)

    def shards(self, config: Zen3Config) -> list[ShardSpec]:
        """Every shard of the partition: each stage followed by its expert groups."""
        out: list[ShardSpec] = []
        for s in range(self.n_stages):
            spec = self.stage(config, s)
            out.append(spec)
            out.extend(self.expert_group(config, s, g) for g in range(spec.expert_groups))
        return out

    def shard(self, config: Zen3Config, name: str) -> ShardSpec:
        """Parse `stage/<s>` or `experts/<s>/<g>`."""
        parts = name.split("/")
        try:
            if parts[0] == "stage" and len(parts) == 2:
                return self.stage(config, int(parts[1]))
            if parts[0] == "experts" and len(parts) == 3:
                return self.expert_group(config, int(parts[1]), int(parts[2]))
        except ValueError as exc:
            raise ValueError(f"shard: {name!r}: {exc}") from None
        raise ValueError(f"shard: {name!r} is not stage/<s> or experts/<s>/<g>")

    def to_dict(self) -> dict:
        return {"stages": [list(s) for s in self.stages], "expert_groups": self.expert_groups}


def expert_range(n_experts: int, n_groups: int, group: int) -> tuple[int, int]:
    """Experts [lo, hi) of `group` when n_experts are cut into n_groups contiguous, nearly equal groups."""
    return group * n_experts // n_groups, (group + 1) * n_experts // n_groups


def _moe_in(config: Zen3Config, start: int, stop: int) -> bool:
    return any(config.is_moe_layer(i) for i in range(start, stop))

"""Shards of a Zen-3 model: `StageShard` (a pipeline stage's trunk) and `ExpertGroup` (some experts of a stage's MoE
layers), and `LocalComposition`, which runs them in sequence in one process and computes exactly the full model.

Contract for serving shards in other processes:

- `StageShard.forward(x, targets=None) -> (out, aux)`: x is token ids [B, T] on stage 0, else the previous stage's
  hidden states [B, T, D]. The last stage returns the mean cross-entropy when given targets [B, T] (logits without);
  other stages return hidden states [B, T, D]. `aux` is the stage's auxiliary loss (load balancing + z-loss of its
  MoE layers, already weighted by the config's coefficients), a 0-dim fp32 tensor that requires grad exactly when
  the stage has MoE layers. The training objective is the last stage's loss plus every stage's aux; run a stage's
  backward with `stage_backward(out, aux, grad_out)` (grad_out None on the last stage).
- For each MoE layer the stage routes its tokens, sorts the token-expert assignments by expert, and calls
  `dispatcher(layer_index, group_index, rows, expert_ids)` once per expert group that received rows (a group with
  no rows is never called); it weights the returned rows by the gates and adds them back to their tokens.
- `ExpertGroup.forward(layer_index, rows, expert_ids) -> Tensor[n, D]` is a plain differentiable function of `rows`
  (and of the group's parameters): a server can run it, keep the graph, and run backward with the output gradient
  the stage sends later.
- Every shard's state_dict (and named_parameters) uses the full model's names, so a full checkpoint loads into a
  shard with `load_full_state_dict`, and replicas of a shard average tensors of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from zoo_node.model.attention import Backend
from zoo_node.model.config import Zen3Config
from zoo_node.model.layers import Expert, ExpertDispatcher
from zoo_node.model.model import Trunk, init_parameters
from zoo_node.model.moe import ExpertBackend, experts_forward
from zoo_node.model.partition import ExpertGroupSpec, Partition, ShardSpec, StageSpec, expert_range


class StageShard(Trunk):
    """Pipeline stage `stage` of `partition`: its layers' attention, norms, routers and dense FFNs (plus the embedding
    on stage 0, the final norm, head and loss on the last stage); its experts are reached through `dispatcher`."""

    def __init__(
        self,
        config: Zen3Config,
        partition: Partition,
        stage: int,
        dispatcher: ExpertDispatcher | None = None,
        *,
        seed: int | None = 0,
        attention_backend: Backend = "auto",
    ) -> None:
        partition.validate(config)
        self.spec: StageSpec = partition.stage(config, stage)
        super().__init__(
            config,
            self.spec.start,
            self.spec.stop,
            first=self.spec.is_first,
            last=self.spec.is_last,
            experts=False,
            seed=seed,
            attention_backend=attention_backend,
        )
        self.group_bounds = [
            expert_range(config.n_experts, self.spec.expert_groups, g) for g in range(self.spec.expert_groups)
        ]
        self.set_dispatcher(dispatcher)

    def set_dispatcher(self, dispatcher: ExpertDispatcher | None) -> None:
        """Set (or replace) the callable through which this stage's MoE layers reach their expert groups."""
        for moe in self.moe_layers():
            moe.dispatcher = dispatcher
            moe.group_bounds = self.group_bounds

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.moe_layers() and self.moe_layers()[0].dispatcher is None:
            raise RuntimeError(f"{self.spec.name} has MoE layers but no expert dispatcher")
        if targets is not None and not self.last:
            raise ValueError(f"targets: only the last stage takes targets, not {self.spec.name}")
        return self.run(x, targets)


class _LayerExperts(nn.Module):
    """Holds `moe.experts.<e>` for one layer so that names read `layers.<i>.moe.experts.<e>.…`."""

    def __init__(self, config: Zen3Config, experts: range) -> None:
        super().__init__()
        self.moe = nn.Module()
        self.moe.experts = nn.ModuleDict({str(e): Expert(config.d_model, config.expert_ffn_dim) for e in experts})


class ExpertGroup(nn.Module):
    """Experts [lo, hi) of every MoE layer of one stage (`experts/<s>/<g>`)."""

    def __init__(
        self,
        config: Zen3Config,
        partition: Partition,
        stage: int,
        group: int,
        *,
        seed: int | None = 0,
        expert_backend: ExpertBackend = "auto",
    ) -> None:
        super().__init__()
        partition.validate(config)
        self.config = config
        self.spec: ExpertGroupSpec = partition.expert_group(config, stage, group)
        self.expert_backend: ExpertBackend = expert_backend
        self.layers = nn.ModuleDict({str(i): _LayerExperts(config, self.spec.experts) for i in self.spec.moe_layers})
        if seed is not None and not any(p.is_meta for p in self.parameters()):
            init_parameters(self, config, seed)

    def forward(self, layer_index: int, rows: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
        """Expert expert_ids[r] applied to rows[r] for every row (unweighted); ids are global expert indices."""
        key = str(layer_index)
        if key not in self.layers:
            raise ValueError(f"layer_index: {layer_index} is not a MoE layer of {self.spec.name}")
        lo, hi = self.spec.expert_start, self.spec.expert_stop
        if rows.ndim != 2 or rows.shape[1] != self.config.d_model or expert_ids.shape != rows.shape[:1]:
            raise ValueError(
                f"rows: expected [n, {self.config.d_model}] rows and [n] expert_ids, "
                f"got {tuple(rows.shape)} and {tuple(expert_ids.shape)}"
            )
        local = expert_ids - lo
        if local.numel() and (int(local.min()) < 0 or int(local.max()) >= hi - lo):
            raise ValueError(f"expert_ids: outside this group's experts {lo}..{hi - 1}")
        experts = list(self.layers[key].moe.experts.values())
        order = None
        if local.numel() > 1 and bool((local[1:] < local[:-1]).any()):
            order = torch.argsort(local, stable=True)
            rows, local = rows[order], local[order]
        counts = torch.bincount(local, minlength=hi - lo).tolist()
        out = experts_forward(rows, experts, counts, self.expert_backend)
        if order is not None:
            out = torch.empty_like(out).index_copy(0, order, out)
        return out


def stage_backward(out: torch.Tensor, aux: torch.Tensor, grad_out: torch.Tensor | None) -> None:
    """Backward of one stage: `out` with `grad_out` (None: `out` is the last stage's loss, gradient 1), plus aux with
    gradient 1 where aux is part of the graph."""
    tensors = [out]
    grads = [torch.ones_like(out) if grad_out is None else grad_out]
    if aux.requires_grad:
        tensors.append(aux)
        grads.append(torch.ones_like(aux))
    torch.autograd.backward(tensors, grads)


class LocalComposition(nn.Module):
    """All shards of a partition in one process, stages called in sequence, expert groups called by a local
    dispatcher: computes the same loss and gradients as `Zen3Model` with the same weights."""

    def __init__(
        self,
        config: Zen3Config,
        partition: Partition,
        *,
        seed: int | None = 0,
        attention_backend: Backend = "auto",
        expert_backend: ExpertBackend = "auto",
    ) -> None:
        super().__init__()
        partition.validate(config)
        self.config = config
        self.partition = partition
        self.stages = nn.ModuleList(
            StageShard(config, partition, s, seed=seed, attention_backend=attention_backend)
            for s in range(partition.n_stages)
        )
        self.groups = nn.ModuleList(
            nn.ModuleList(
                ExpertGroup(config, partition, s, g, seed=seed, expert_backend=expert_backend)
                for g in range(stage.spec.expert_groups)
            )
            for s, stage in enumerate(self.stages)
        )
        for s, stage in enumerate(self.stages):
            stage.set_dispatcher(self._dispatcher(s))

    def _dispatcher(self, stage: int) -> ExpertDispatcher:
        def dispatch(layer_index: int, group: int, rows: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
            return self.groups[stage][group](layer_index, rows, expert_ids)

        return dispatch

    def shards(self) -> list[nn.Module]:
        """Every shard module, in the order of `Partition.shards`."""
        out: list[nn.Module] = []
        for stage, groups in zip(self.stages, self.groups, strict=True):
            out.append(stage)
            out.extend(groups)
        return out

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss or logits, total auxiliary loss), like `Zen3Model.forward`."""
        x = tokens
        aux = None
        for stage in self.stages:
            x, stage_aux = stage(x, targets if stage.last else None)
            aux = stage_aux if aux is None else aux + stage_aux
        return x, aux

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The union of the shards' state_dicts: the full model's state_dict."""
        merged: dict[str, torch.Tensor] = {}
        for shard in self.shards():
            merged.update(shard.state_dict())
        return merged

    def load_full_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        for shard in self.shards():
            load_full_state_dict(shard, state_dict)


def load_full_state_dict(shard: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a shard's own entries from a full model's state_dict (every key the shard has must be there)."""
    wanted = shard.state_dict().keys()
    missing = [k for k in wanted if k not in state_dict]
    if missing:
        raise KeyError(f"state_dict lacks {len(missing)} of the shard's keys, e.g. {missing[0]!r}")
    shard.load_state_dict({k: state_dict[k] for k in wanted}, strict=True)


def build_shard(
    config: Zen3Config,
    partition: Partition,
    spec: ShardSpec | str,
    *,
    seed: int | None = 0,
    attention_backend: Backend = "auto",
    expert_backend: ExpertBackend = "auto",
) -> StageShard | ExpertGroup:
    """The shard module for a spec (or its name, `stage/<s>` / `experts/<s>/<g>`), initialised from `seed`."""
    if isinstance(spec, str):
        spec = partition.validate(config).shard(config, spec)
    if isinstance(spec, StageSpec):
        return StageShard(config, partition, spec.index, seed=seed, attention_backend=attention_backend)
    return ExpertGroup(config, partition, spec.stage, spec.group, seed=seed, expert_backend=expert_backend)

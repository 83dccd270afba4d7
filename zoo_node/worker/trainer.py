"""Training one shard replica: when the shard's replicas together have accumulated the run's target batch, they
average gradients (hivemind all-reduce, weighted by samples), step, and emit a receipt.

Progress is published in the DHT (`<run>/progress/<shard>`: this replica's round and samples), the SWARM/hivemind
way: every replica sees when the sum reaches `target_batch_size` and joins the round. Serving goes on while the
all-reduce runs; the shard is held exclusively only to hand its gradients over and to apply the step.

Replicas that start equal and apply the same averaged gradients stay equal: every member of a round gets the same
bits (zoo_node.worker.averaging). Two things still split them, and both are healed by reloading the state from a
replica: a round in which a reducer failed (hivemind then keeps the local values of that reducer's parts; the member
that saw it reloads right after the step), and a round a replica missed (each member sends a probe of its parameters;
one whose probe is off the group's reference, highest round then lowest PeerID, reloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hivemind.utils.timed_storage import ValueWithExpiration, get_dht_time

from zoo_node.runspec import RunSpec
from zoo_node.worker.averaging import make_averager
from zoo_node.worker.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from zoo_node.worker.receipts import MemberWork, Receipt, ReceiptSink
from zoo_node.worker.records import progress_key, read_servers
from zoo_node.worker.runtime import Progress, ShardRuntime

logger = logging.getLogger(__name__)


def make_optimizer(spec: RunSpec, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The run's optimizer, with its state created up front (a fixed list of tensors to share with joiners)."""
    o = spec.optimizer
    if o.name == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        for p in params:
            opt.state[p] = {
                "step": torch.tensor(0.0),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
    else:
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        if o.momentum:
            for p in params:
                opt.state[p] = {"momentum_buffer": torch.zeros_like(p)}
    return opt


def parameters_probe(params: Sequence[torch.Tensor], chunks: int = 4, max_values: int = 2048) -> list[float]:
    """Sums of each tensor's `chunks` contiguous slices, in float64: a change of one element by `d` moves a sum by `d`,
    so a replica that differs anywhere (a missed round, a failed reducer's part) shows, while equal bits sum equal."""
    sums = [
        piece.sum(dtype=torch.float64)
        for p in params[: max(1, max_values // chunks)]
        for piece in p.detach().flatten().tensor_split(chunks)
    ]
    return torch.stack(sums).cpu().tolist() if sums else []


def probes_differ(a: Sequence[float], b: Sequence[float], tolerance: float) -> bool:
    """Whether two replicas' probes differ by more than `tolerance` anywhere (or do not even match in length)."""
    if len(a) != len(b):
        return True
    return any(not abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


class ShardTrainer:
    """Optimizer, averaging rounds, receipts, state sharing and checkpoints of one shard replica."""

    def __init__(
        self,
        spec: RunSpec,
        runtime: ShardRuntime,
        *,
        dht: Any,
        peer: str,
        client_mode: bool,
        sinks: Sequence[ReceiptSink] = (),
        home: Path | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.spec = spec
        self.runtime = runtime
        self.shard = runtime.name
        self.module = runtime.backend.module
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.optimizer = make_optimizer(spec, self.params)
        self.dht, self.peer, self.sinks, self.home, self.poll_s = dht, peer, list(sinks), home, poll_s
        self.round = 0
        self.rounds_averaged = 0
        self.state_loads = 0
        self.last_receipt: Receipt | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._on_round: list[Callable[[Receipt], None]] = []
        a = spec.averaging
        prefix = f"{spec.name}_{self.shard.replace('/', '_')}"
        self.averager = make_averager(
            self.params,
            dht=dht,
            prefix=prefix,
            compression=a.compression,
            powersgd_rank=a.powersgd_rank,
            matchmaking_time_s=a.matchmaking_time_s,
            averaging_timeout_s=a.averaging_timeout_s,
            client_mode=client_mode,
            state_provider=self.shared_state,
        )

    # --- state shared with joiners ----------------------------------------------------------------------------
    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [p.data for p in self.params]
        for p in self.params:
            state = self.optimizer.state.get(p, {})
            tensors += [state[k] for k in sorted(state) if isinstance(state[k], torch.Tensor)]
        return tensors

    def shared_state(self) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """(metadata, tensors) a joiner downloads: parameters then optimizer state, at a round boundary."""
        with self._state_lock:
            meta = {"round": self.round, "shard": self.shard, "run_hash": self.spec.content_hash}
            return meta, [t.detach().cpu().clone() for t in self._state_tensors()]

    def load_state_from_peers(self, min_round: int = 0) -> bool:
        """Download parameters and optimizer state from a replica; False if none answered with a fitting state (or,
        with `min_round`, with a state of that round or later)."""
        timeout = self.spec.averaging.load_state_timeout_s
        loaded = self.averager.load_state_from_peers(timeout=timeout)
        if loaded is None:
            return False
        meta, tensors = loaded
        mine = self._state_tensors()
        if (
            not isinstance(meta, dict)
            or meta.get("run_hash") != self.spec.content_hash
            or meta.get("shard") != self.shard
            or len(tensors) != len(mine)
            or any(t.shape != m.shape for t, m in zip(tensors, mine, strict=True))
            or not all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
        ):
            logger.warning("refused a peer's state that does not fit this shard", extra={"shard": self.shard})
            return False
        if not isinstance(meta.get("round"), int) or meta["round"] < min_round:
            return False
        with self.runtime.exclusive(take_progress=False), self._state_lock, torch.no_grad():
            for target, value in zip(mine, tensors, strict=True):
                target.copy_(value.to(target.dtype))
            self.round = int(meta["round"])
        self.state_loads += 1
        self.averager.state_sharing_priority = float(self.round)
        logger.info("loaded shard state from peers", extra={"shard": self.shard, "round": self.round})
        return True

    # --- checkpoints ------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        if self.home is None:
            return None
        with self.runtime.exclusive(take_progress=False), self._state_lock:
            meta = CheckpointMeta(self.spec.name, self.spec.content_hash, self.shard, self.round)
            return save_checkpoint(self.home, meta, self.module, self.optimizer)

    def restore_checkpoint(self) -> bool:
        if self.home is None:
            return False
        meta = load_checkpoint(
            self.home, self.spec.name, self.spec.content_hash, self.shard, self.module, self.optimizer
        )
        if meta is None:
            return False
        self.round = meta.round
        self.averager.state_sharing_priority = float(self.round)
        return True

    # --- rounds -----------------------------------------------------------------------------------------------
    def _publish_progress(self, samples: int) -> None:
        self.dht.store(
            progress_key(self.spec.name, self.shard),
            subkey=self.peer,
            value={"round": self.round, "samples": samples},
            expiration_time=get_dht_time() + self.spec.routing.record_ttl_s,
            return_future=True,
        )

    def _swarm_samples(self, own: int) -> tuple[int, int]:
        """(samples the replicas accumulated for this round, the highest round any replica announced)."""
        found = self.dht.get(progress_key(self.spec.name, self.shard), latest=True)
        total, highest = own, self.round
        if found is not None and isinstance(found.value, dict):
            for peer, item in found.value.items():
                if peer == self.peer or not isinstance(item, ValueWithExpiration):
                    continue
                value = item.value
                if not isinstance(value, dict):
                    continue
                rnd, samples = value.get("round"), value.get("samples")
                if not isinstance(rnd, int) or not isinstance(samples, int) or samples < 0:
                    continue
                highest = max(highest, rnd)
                if rnd == self.round:
                    total += samples
        return total, highest

    def run_round(self) -> Receipt:
        """Average with whichever replicas join, step, and emit the receipt."""
        a = self.spec.averaging
        others = [r for r in read_servers(self.dht, self.spec.name, self.shard) if r.peer != self.peer]
        probe = parameters_probe(self.params)
        partial_before = self.averager.partial_rounds.value
        control = None
        with self.runtime.exclusive() as progress:
            mine = self._member(progress)
            if others:
                self.averager.local_samples_accumulated = progress.samples
                self.averager.local_times_accumulated = progress.micro_batches
                gather = {**mine.__dict__, "round": self.round, "probe": probe}
                control = self.averager.step(
                    wait=False, timeout=a.matchmaking_time_s * 4 + a.averaging_timeout_s, gather=gather
                )
            else:
                scale = 1.0 / progress.micro_batches if progress.micro_batches else 0.0
                averaged = [p.grad.detach().clone().mul_(scale) for p in self.params]
                for p in self.params:
                    p.grad.zero_()
        gathered = None
        if control is not None:
            try:
                gathered = control.result(a.averaging_timeout_s * 2)
            except Exception as exc:  # no group, a timeout, a failed all-reduce: step on our own gradients
                logger.info("averaging round failed; stepping alone", extra={"shard": self.shard, "why": repr(exc)})
        with self.runtime.exclusive(take_progress=False), self._state_lock:
            if control is not None:
                with self.averager.use_averaged_gradients() as grads:
                    self._step(list(grads))
            else:
                self._step(averaged)
            self.round += 1
        partial = control is not None and self.averager.partial_rounds.value != partial_before
        # A replica whose round was partial is not a good source: joiners and reloaders prefer the others.
        self.averager.state_sharing_priority = float(self.round) - (0.5 if partial else 0.0)
        members = [mine]
        if gathered:
            members = [self._member_from(peer, data) for peer, data in gathered.items()]
            members = [m for m in members if m is not None]
            self.rounds_averaged += 1
            if not partial:
                self._check_divergence(gathered, probe)
        if gathered:
            # The group's round: every member numbers it the same (the highest round gathered, plus one), so their
            # receipts share one body to co-sign; a member that lagged adopts it.
            rounds = [d["round"] for d in gathered.values() if isinstance(d, dict) and isinstance(d.get("round"), int)]
            with self._state_lock:
                self.round = max([self.round, *(r + 1 for r in rounds)])
        if gathered and partial:
            self._reload_after_partial_round()
        receipt = Receipt(self.spec.name, self.shard, self.round, tuple(members), averaged=bool(gathered))
        self.last_receipt = receipt
        for sink in self.sinks:
            try:
                sink(receipt)
            except Exception:
                logger.exception("a receipt sink failed")
        for hook in self._on_round:
            hook(receipt)
        return receipt

    def _reload_after_partial_round(self, attempts: int = 5) -> None:
        """Take the state of a replica that finished this round (a groupmate still stepping offers the last one)."""
        logger.warning(
            "a reducer failed this round and its parts kept local values; reloading the state",
            extra={"shard": self.shard, "round": self.round},
        )
        for _ in range(attempts):
            if self.load_state_from_peers(min_round=self.round) or self._stop.wait(self.poll_s):
                return
        logger.warning("no replica had this round's state; a later probe check heals it", extra={"shard": self.shard})

    def catch_up(self) -> None:
        """Reload the state from the replicas that moved ahead; the gradients accumulated meanwhile are dropped."""
        if self.load_state_from_peers():
            with self.runtime.exclusive():
                for p in self.params:
                    p.grad.zero_()
        else:
            self._stop.wait(self.poll_s)

    def _step(self, grads: list[torch.Tensor]) -> None:
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            logger.warning("skipped a step: the gradients are not finite", extra={"shard": self.shard})
            return
        saved = [p.grad for p in self.params]
        try:
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g.to(p.dtype)
            if self.spec.optimizer.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, self.spec.optimizer.grad_clip)
            self.optimizer.step()
        finally:
            for p, g in zip(self.params, saved, strict=True):
                p.grad = g

    def _member(self, progress: Progress) -> MemberWork:
        return MemberWork(self.peer, progress.samples, progress.tokens, progress.flops, progress.seconds)

    @staticmethod
    def _member_from(peer: Any, data: Any) -> MemberWork | None:
        if not isinstance(data, dict):
            return None
        try:
            return MemberWork(
                peer.to_base58() if hasattr(peer, "to_base58") else str(peer),
                int(data["samples"]),
                int(data["tokens"]),
                float(data["flops"]),
                float(data["seconds"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def _check_divergence(self, gathered: dict, my_probe: list[float]) -> None:
        """Reload the state if this replica's parameters (before the round) were off the group's reference: the
        member with the highest round, then the lowest PeerID."""
        entries = []
        for peer, data in gathered.items():
            if isinstance(data, dict) and isinstance(data.get("round"), int) and isinstance(data.get("probe"), list):
                name = peer.to_base58() if hasattr(peer, "to_base58") else str(peer)
                entries.append((-data["round"], name, data["probe"]))
        if not entries:
            return
        _, reference_peer, reference_probe = min(entries, key=lambda e: (e[0], e[1]))
        tolerance = 0.25 * self.spec.optimizer.lr  # a missed round moves parameters by about one lr (Adam)
        if reference_peer != self.peer and probes_differ(reference_probe, my_probe, tolerance):
            logger.warning(
                "parameters diverged from the group; reloading state",
                extra={"shard": self.shard, "from": reference_peer},
            )
            self.load_state_from_peers()

    def _loop(self) -> None:
        target = self.spec.averaging.target_batch_size
        republish_s = self.spec.routing.record_ttl_s / 2
        published: tuple[int, int] | None = None
        published_at = 0.0
        while not self._stop.is_set():
            own = self.runtime.progress.samples
            # Publish on change (and before the record would expire): DHT traffic stays proportional to work.
            if published != (self.round, own) or time.monotonic() - published_at > republish_s:
                self._publish_progress(own)
                published, published_at = (self.round, own), time.monotonic()
            try:
                total, highest = self._swarm_samples(own)
            except Exception:
                logger.exception("could not read the shard's progress")
                total, highest = own, self.round
            if highest > self.round:  # the others averaged without us: take their state, drop our stale gradients
                self.catch_up()
                continue
            if total >= target:
                self.run_round()
                continue
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"trainer-{self.shard}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the round loop to end (it finishes the round under way); `stop` waits for it."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.spec.averaging.averaging_timeout_s * 3)
        self.averager.shutdown()

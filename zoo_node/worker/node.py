"""A data-plane worker: joins the run's hivemind DHT, serves its shards, trains them, and drives if it has stage 0.

`WorkerNode(...).start()` brings everything up; `drain()` takes it down cleanly (records withdrawn, a final
checkpoint, averagers and p2pd stopped). `zoo-node worker` runs one in the foreground; the supervisor's worker
process plugs the same object into its lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo_node.config import NodeConfig
from zoo_node.errors import ZooError
from zoo_node.identity import KeyPaths
from zoo_node.runspec import RunSpec
from zoo_node.worker.receipts import JsonlReceiptLog, ReceiptSink
from zoo_node.worker.records import ServerRecord, announce, read_servers, withdraw
from zoo_node.worker.remote import ShardCall, Transport, remote_call
from zoo_node.worker.routing import Router
from zoo_node.worker.runtime import ShardRuntime
from zoo_node.worker.servicer import ShardServicer
from zoo_node.worker.shard_choice import choose_shards, should_move
from zoo_node.worker.shards import build_backend, shard_names
from zoo_node.worker.trainer import ShardTrainer

logger = logging.getLogger(__name__)


class WorkerError(ZooError):
    """The worker cannot start (bad shard names, no DHT, no state to load)."""


@dataclass
class WorkerOptions:
    """How one worker runs: which shards (None: chosen by coverage), whether it drives, where it bootstraps."""

    initial_peers: Sequence[str] = ()
    shards: Sequence[str] | None = None
    num_shards: int = 1
    drive: bool = True
    checkpoints: bool = True
    extra_sinks: list[ReceiptSink] = field(default_factory=list)


def run_dir(home: Path, run: str) -> Path:
    return Path(home) / "runs" / run


class WorkerNode:
    """One worker process' data plane."""

    def __init__(self, home: Path, config: NodeConfig, spec: RunSpec, options: WorkerOptions) -> None:
        self.home, self.config, self.spec, self.options = Path(home), config, spec, options
        self.dir = run_dir(self.home, spec.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runtimes: dict[str, ShardRuntime] = {}
        self.trainers: dict[str, ShardTrainer] = {}
        self.driver = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.dht: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servicer: ShardServicer | None = None
        self.started_at = time.time()

    # --- bring-up ---------------------------------------------------------------------------------------------
    def _start_dht(self) -> None:
        import hivemind

        w = self.config.worker
        self.dht = hivemind.DHT(
            initial_peers=list(self.options.initial_peers),
            host_maddrs=list(w.host_multiaddrs),
            announce_maddrs=list(w.announce_multiaddrs) or None,
            identity_path=str(KeyPaths.of(self.home).data_key),
            check_if_identity_free=False,  # the identity is Ed25519; hivemind's check assumes RSA
            client_mode=w.client_mode,
            use_relay=w.use_relay,
            startup_timeout=60,
            start=True,
        )
        self.peer = self.dht.peer_id.to_base58()
        self.maddrs = [str(m) for m in self.dht.get_visible_maddrs()]
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, name="worker-p2p", daemon=True)
        thread.start()
        self.p2p = self._await(self.dht.replicate_p2p())

    def _await(self, coro: Any, timeout: float = 60.0) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _lookup(self, shard: str) -> list[ServerRecord]:
        return read_servers(self.dht, self.spec.name, shard)

    def choose(self) -> list[str]:
        """The shards to serve: the given ones (validated), else Petals' rule on the announced coverage."""
        names = shard_names(self.spec)
        if self.options.shards is not None:
            unknown = [s for s in self.options.shards if s not in names]
            if unknown:
                raise WorkerError(f"shards {unknown} are not shards of run {self.spec.name} ({', '.join(names)})")
            return list(self.options.shards)
        return choose_shards({s: self._lookup(s) for s in names}, self.options.num_shards)

    def _call_factory(self, pinned_local: set[str]):
        r = self.spec.routing

        def make(shard: str, header: dict, tokens: int) -> ShardCall:
            call = ShardCall(
                self.router if shard not in pinned_local else self.local_router,
                self.transport,
                shard,
                header,
                tokens,
                max_attempts=r.max_attempts,
                timeout_s=r.call_timeout_s,
            )
            return call

        return make

    def _call_group(self, shard: str, header: dict, layer: int, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        extra = {"micro": header.get("micro", ""), "samples": header.get("samples", 0), "layer": layer}
        call = self._make_call(shard, extra, int(rows.shape[0]))
        (out,) = remote_call(call, rows, ids)
        return out

    def start(self) -> None:
        from zoo_node.data.sharding import TokenStream
        from zoo_node.worker.driver import Driver
        from zoo_node.worker.shards import model_parts

        # A quarter of the cores for torch's intra-op threads: the worker shares the machine with its p2pd, DHT and
        # averager processes (and, on a small machine, other workers); oversubscribed OpenMP threads spin and slow
        # every one of them down by several times.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 4))
        self._start_dht()
        shards = self.choose()
        logger.info("serving shards", extra={"shards": shards, "peer": self.peer})
        r = self.spec.routing
        self.router = Router(self._lookup)
        self.local_router = Router(lambda s: [ServerRecord(peer=self.peer, shard=s, expires=float("inf"))], bans=False)
        self.transport = Transport(self.p2p, self.loop, self.spec.name, self.peer, self.runtimes)
        self._sinks: list[ReceiptSink] = [JsonlReceiptLog(self.dir / "receipts.jsonl"), *self.options.extra_sinks]
        # The driver's own stage 0 always runs here; every other shard goes where the router sends it.
        self._make_call = self._call_factory({"stage/0"} & set(shards))
        for shard in shards:
            self._prepare_shard(shard)
        self.servicer = ShardServicer(self.runtimes, call_timeout_s=r.call_timeout_s)
        self._await(self.servicer.add_p2p_handlers(self.p2p, namespace=self.spec.name))
        self._announce_all()
        self._spawn(self._announce_loop, "announce")
        self._spawn(self._checkpoint_loop, "checkpoint")
        self._spawn(self._rebalance_loop, "rebalance")
        for trainer in self.trainers.values():
            trainer.start()
        if self.options.drive and "stage/0" in self.runtimes:
            d = self.spec.data
            stream = TokenStream.from_spec(
                d.corpus,
                d.corpus_sha256,
                d.tokenizer,
                d.tokenizer_sha256,
                seq_len=d.seq_len,
                micro_batch_size=d.micro_batch_size,
            )
            config, _partition = model_parts(self.spec)
            if stream_vocab_too_big(d.tokenizer, config.vocab_size):
                raise WorkerError(f"tokenizer {d.tokenizer} does not fit the vocabulary of {self.spec.model}")
            pipeline = self.pipeline()
            all_shards = shard_names(self.spec)
            self.driver = Driver(
                self.spec,
                self.peer,
                stream,
                pipeline,
                self.dir / f"driver-{self.peer}.jsonl",
                uncovered=lambda: self.router.uncovered(all_shards),
            )
            self.driver.start(first_step=self._first_step())
        self._write_status()

    def pipeline(self) -> Any:
        """The pipeline through this run's stages, as this worker's driver (or a client) calls it."""
        from zoo_node.worker.driver import Pipeline
        from zoo_node.worker.shards import model_parts

        _, partition = model_parts(self.spec)
        return Pipeline(partition.n_stages, self._make_call)

    def inspect(self, peer: str, shard: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """A served shard's parameters and accumulated gradients, by parameter name (over `rpc_inspect`)."""
        return self.transport.inspect(peer, shard)

    def _prepare_shard(self, shard: str) -> ShardTrainer:
        """Build a shard, restore its checkpoint, load the live replicas' state if they are ahead (not yet serving)."""
        backend = build_backend(self.spec, shard, self._call_group)
        runtime = ShardRuntime(backend, activation_ttl_s=self.spec.routing.activation_ttl_s)
        trainer = ShardTrainer(
            self.spec,
            runtime,
            dht=self.dht,
            peer=self.peer,
            client_mode=self.config.worker.client_mode,
            sinks=self._sinks,
            home=self.home if self.options.checkpoints else None,
        )
        restored = trainer.restore_checkpoint()
        others = [rec for rec in self._lookup(shard) if rec.peer != self.peer]
        behind = bool(others) and max(rec.round for rec in others) > trainer.round
        if behind and not trainer.load_state_from_peers():
            logger.warning("no replica gave its state; starting from what we have", extra={"shard": shard})
        # Registered only now: the servicer and the router's local path see the shard once its state is loaded.
        self.runtimes[shard] = runtime
        self.trainers[shard] = trainer
        logger.info(
            "shard ready",
            extra={"shard": shard, "round": trainer.round, "restored": restored, "loads": trainer.state_loads},
        )
        return trainer

    def move(self, old: str, new: str) -> None:
        """Serve `new` (its state loaded from its replicas), then stop serving `old` (withdrawn, checkpointed)."""
        logger.info("moving to a less covered shard", extra={"from": old, "to": new})
        # The new shard first: if it cannot be taken, the old one goes on serving as if nothing happened.
        self._prepare_shard(new).start()
        trainer = self.trainers.pop(old)
        withdraw(self.dht, self.spec.name, self.peer, old)
        trainer.stop()
        with contextlib.suppress(Exception):
            trainer.save_checkpoint()
        self.runtimes.pop(old, None)
        self._announce_all()

    def _rebalance_loop(self) -> None:
        """Every `rebalance_period_s`, move one shard if the swarm is unbalanced beyond `rebalance_margin` (never
        the stage a driver drives, never a shard we alone serve, never to a second stage or a shard we have)."""
        r = self.spec.routing
        while not self._stop.wait(r.rebalance_period_s):
            if self.options.shards is not None:  # shards given by the operator stay put
                continue
            try:
                names = shard_names(self.spec)
                records = {s: self._lookup(s) for s in names}
                for current in list(self.runtimes):
                    if current == "stage/0" and self.driver is not None:
                        continue
                    target = should_move(records, self.peer, current, r.rebalance_margin)
                    has_stage = any(s.startswith("stage/") for s in self.runtimes if s != current)
                    if target is None or target in self.runtimes or (has_stage and target.startswith("stage/")):
                        continue
                    self.move(current, target)
                    break  # one move per period: the others' records must catch up first
            except Exception:
                logger.exception("rebalancing failed")

    def _first_step(self) -> int:
        # A restarted driver continues from its stage 0's round (one round per step when the swarm is balanced).
        trainer = self.trainers.get("stage/0")
        return trainer.round if trainer is not None else 0

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _announce_all(self) -> None:
        for shard, trainer in list(self.trainers.items()):
            runtime = trainer.runtime
            record = ServerRecord(
                peer=self.peer,
                shard=shard,
                tokens_per_s=runtime.throughput.tokens_per_s,
                queued_tokens=runtime.queued_tokens,
                round=trainer.round,
                maddrs=self.maddrs,
            )
            announce(self.dht, self.spec.name, record, self.spec.routing.record_ttl_s)

    def _announce_loop(self) -> None:
        while not self._stop.wait(self.spec.routing.announce_period_s):
            try:
                self._announce_all()
                self._write_status()
            except Exception:
                logger.exception("announcement failed")

    def _checkpoint_loop(self) -> None:
        while not self._stop.wait(self.spec.checkpoint_period_s):
            self.save_checkpoints()

    def save_checkpoints(self) -> None:
        if not self.options.checkpoints:
            return
        for trainer in self.trainers.values():
            try:
                trainer.save_checkpoint()
            except Exception:
                logger.exception("checkpoint failed", extra={"shard": trainer.shard})

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "peer": self.peer,
            "maddrs": self.maddrs,
            "run": self.spec.name,
            "run_hash": self.spec.content_hash,
            "shards": {
                s: {
                    "round": t.round,
                    "rounds_averaged": t.rounds_averaged,
                    "state_loads": t.state_loads,
                    "tokens_per_s": t.runtime.throughput.tokens_per_s,
                    "evicted": t.runtime.evicted,
                }
                for s, t in list(self.trainers.items())
            },
            "driver": None
            if self.driver is None
            else {
                "step": self.driver.step,
                "failed": self.driver.failed,
                "finished": self.driver.finished.is_set(),
                "last_loss": self.driver.losses[-1] if self.driver.losses else None,
            },
            "refused": self.servicer.refused if self.servicer else 0,
            "bans": self.router.bans,
        }

    def _write_status(self) -> None:
        path = self.dir / f"worker-{self.peer}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status()))
        os.replace(tmp, path)

    # --- shutdown ---------------------------------------------------------------------------------------------
    def drain(self) -> None:
        """Stop driving and serving, withdraw the announcements, checkpoint, and shut hivemind down."""
        self._stop.set()
        if self.driver is not None:
            self.driver.stop()
        for shard in self.runtimes:
            with contextlib.suppress(Exception):
                withdraw(self.dht, self.spec.name, self.peer, shard)
        # Every shard's loop is told first, so that their rounds under way end together, not one after another
        # (a node with four shards mid-round took longer than the testnet's 20 s to stop).
        for trainer in self.trainers.values():
            trainer.request_stop()
        for trainer in self.trainers.values():
            trainer.stop()
        self.save_checkpoints()
        if self.servicer is not None:
            with contextlib.suppress(Exception):
                self._await(self.servicer.remove_p2p_handlers(self.p2p, namespace=self.spec.name), timeout=10)
            self.servicer.shutdown()
        if self.dht is not None:
            with contextlib.suppress(Exception):
                self._await(self.p2p.shutdown(), timeout=10)
            self.dht.shutdown()
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._write_status_final()

    def _write_status_final(self) -> None:
        try:
            path = self.dir / f"worker-{self.peer}.json"
            status = self.status()
            status["stopped"] = True
            path.write_text(json.dumps(status))
        except Exception:
            pass


def stream_vocab_too_big(tokenizer: str, vocab_size: int) -> bool:
    from zoo_node.data.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer).vocab_size > vocab_size


def reap_children(grace_s: float = 5.0) -> None:
    """Terminate (then kill) every process this one started that is still alive: hivemind's DHT and averager
    processes and p2pd must not outlive the worker."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_s)

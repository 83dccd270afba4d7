"""`zoo-node coordinator run`: the run owner's daemon.

Start-up: config, keys and the run file; the store (time series, receipts) and the settlement ledger; the chain
(the operator key of the coordinator's home is the run's coordinator: it creates the run and posts the roots); the
run on chain (created once, see registration); the FLOPs table of the spec; the CoordinatorService API; the
py-libp2p host in the run's gossip as a control-plane peer; then the loops.

Loops: registry (who may gossip, where to dial, the run's status), connections, sweep (nodes gone silent),
samples (the time series), settlement (each ended epoch, see epochs), systemd watchdog.

Concurrency: asyncio owns the process; the libp2p host runs in its trio thread (zoo_node.control.swarm_thread);
SQLite writes go to one thread in arrival order; settlement and chain calls run in worker threads. Accepted gossip
arrives on the loop; a receipt is committed to the store before it is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_node.config import NodeConfig, load_config, resolve_home, resolve_in_home
from zoo_node.control.gossip_params import GossipParams, rate_limit_per_topic
from zoo_node.control.guard import Accepted, DropCounters, GossipGuard
from zoo_node.control.messages import ControlKey
from zoo_node.control.registry import RegisteredNode, dialable
from zoo_node.control.sd_notify import SystemdNotifier
from zoo_node.control.topics import HEARTBEAT, RECEIPT, RunTopics
from zoo_node.coordinator.events import EventBus
from zoo_node.coordinator.gossip_in import heard_receipt, reported_figures
from zoo_node.coordinator.nodebook import NodeBook
from zoo_node.coordinator.runfile import RunFile, load_run_file
from zoo_node.coordinator.series import AliveNode, coverage_fraction, shard_coverage, swarm_mean
from zoo_node.coordinator.store import (
    NODE_SERIES_RETENTION_S,
    STORE_FILE,
    CoordinatorStore,
    NodePoint,
    RunPoint,
)
from zoo_node.coordinator.views import (
    node_view,
    pending_hours,
    run_series,
    settled_hours,
    settled_mfu,
)
from zoo_node.errors import ZooError
from zoo_node.proto import coordinator_pb2 as pb

if TYPE_CHECKING:
    # py-libp2p is imported only when the swarm starts: a coordinator that fails earlier (a bad run file) or a
    # process that only reads the store never loads it (it cannot share a process with hivemind).
    from zoo_node.control.swarm_thread import SwarmThread

logger = logging.getLogger("zoo_node.coordinator")
ADDRESS_FILE = "run/coordinator.addr"
CLAIMS_DIR = "claims"
SPECS_DIR = "runs"
FLOPS_KEY = "flops_table:{}"


class CoordinatorError(ZooError):
    """The coordinator cannot start or act (run closed, chain refuses, ...)."""


@dataclass
class CoordinatorOptions:
    """`zoo-node coordinator run`'s flags."""

    run_file: Path
    home: Path | None = None
    password_file: Path | None = None
    adopt_run_id: int | None = None
    config_flags: dict[str, Any] = field(default_factory=dict)
    require_joined: bool = True


@dataclass
class SettledFigures:
    """What GetRun needs of one settled epoch (kept in memory, not the whole report)."""

    epoch: int
    accepted: int
    rejected: int
    gpu_hours: float
    cpu_hours: float
    mfu: float | None


def _step(title: str):
    """Log a start-up step with its duration."""

    @contextlib.contextmanager
    def step():
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            # A ZooError is printed by the CLI as one line; anything else is a bug and worth its own log line.
            level = logging.DEBUG if isinstance(exc, ZooError) else logging.ERROR
            logger.log(level, "%s: failed after %.1f s: %s", title, time.monotonic() - started, exc)
            raise
        logger.info("%s: done in %.1f s", title, time.monotonic() - started)

    return step()


class Coordinator:
    """The running coordinator; `await start()`, then `await serve()`."""

    def __init__(self, options: CoordinatorOptions, *, notifier: SystemdNotifier | None = None) -> None:
        self.options = options
        self.home = resolve_home(options.home)
        self.notifier = notifier or SystemdNotifier()
        self.events = EventBus()
        self.config: NodeConfig | None = None
        self.run_file: RunFile | None = None
        self.store: CoordinatorStore | None = None
        self.chain = None  # zoo_node.chain.client.ChainClient
        self.run = None  # zoo_node.chain.run_registry.RunInfo
        self.run_id = 0
        self.keeper = None  # zoo_node.coordinator.epochs.EpochKeeper
        self.ledger = None  # zoo_node.coordinator.ledger.SettlementLedger (the settlement thread's)
        self.spec_path: Path | None = None
        self.api = None  # zoo_node.coordinator.service.CoordinatorApi
        self.swarm: SwarmThread | None = None
        self.guard: GossipGuard | None = None
        self.book: NodeBook | None = None
        self.key: ControlKey | None = None
        self.shards: list[str] = []
        self.address = ""
        self.settlement_problem = ""
        self.receipts_heard = 0
        self.receipts_pending = 0
        self.receipts_duplicate = 0
        self.tokens = 0
        self.messages_in: Counter[str] = Counter()
        self._settled: dict[int, SettledFigures] = {}
        self._bindings: dict[str, str] = {}
        self._registered: dict[str, RegisteredNode] = {}
        self._connected: set[str] = set()
        self._dial_after: dict[str, tuple[float, float]] = {}
        self._rate_limit = 0.0
        self._chain_ahead_s = 0.0
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-coord-db")
        self._ledger_reader = None
        self._heard: list[tuple[str, Any]] = []  # (announcer, HeardReceipt) not yet committed
        self._heard_wanted = asyncio.Event()
        self._settle_lock = asyncio.Lock()
        self._settle_wanted = asyncio.Event()
        self._registry_wanted = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exit_code = 0
        self.started_at = time.time()

    # ---- helpers ---------------------------------------------------------------------------------------------
    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store / ledger-reader call in the database thread (in order of submission)."""
        return await asyncio.get_running_loop().run_in_executor(self._db, lambda: fn(*args))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a coordinator task failed: %r", task.exception(), exc_info=task.exception())
            self.request_shutdown("internal error", exit_code=1)

    @property
    def cfg(self) -> NodeConfig:
        assert self.config is not None
        return self.config

    # ---- start-up --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Every start-up step, in order; on failure everything started so far is stopped."""
        self._loop = asyncio.get_running_loop()
        try:
            with _step("Loading config, keys and the run file"):
                await asyncio.to_thread(self._load)
            with _step("Unlocking the operator key and connecting to the chain"):
                await asyncio.to_thread(self._connect_chain)
            with _step("Registering the run on chain"):
                await asyncio.to_thread(self._register_run)
            with _step("Computing the run's FLOPs per sample"):
                await asyncio.to_thread(self._load_flops_table)
            with _step("Reading the store"):
                await self._load_state()
            with _step("Starting the CoordinatorService API"):
                await self._start_api()
            with _step("Joining the run's gossip"):
                await self._start_swarm()
                await self.refresh_registry()
                await self._maintain_connections()
            self._start_background()
        except BaseException:
            await self.close()
            raise
        if self.api is not None:
            await self.api.set_serving(True)
        self.notifier.ready(self.status_line())
        logger.info("coordinator of run %d up: API on %s, libp2p host %s", self.run_id, self.address, self.key.peer_id)

    def _load(self) -> None:
        from zoo_node.coordinator.ledger import LEDGER_FILE, SettlementLedger
        from zoo_node.identity import load_control_seed

        self.run_file = load_run_file(self.options.run_file)
        self.config = load_config(self.home, self.options.config_flags)
        self.key = ControlKey.from_seed(load_control_seed(self.home))
        self.store = CoordinatorStore(self.home / STORE_FILE)
        self.ledger = SettlementLedger(self.home / LEDGER_FILE)
        self._ledger_reader = SettlementLedger(self.home / LEDGER_FILE)

    def _connect_chain(self) -> None:
        from zoo_node.chain.client import ChainClient
        from zoo_node.identity import load_operator_account, read_password

        account = load_operator_account(self.home, read_password(self.options.password_file))
        self.chain = ChainClient.from_config(self.cfg, self.home, account)

    def _register_run(self) -> None:
        from zoo_node.coordinator.registration import ensure_run

        assert self.run_file is not None and self.store is not None
        run, created = ensure_run(self.chain, self.store, self.run_file, adopt_run_id=self.options.adopt_run_id)
        self.run, self.run_id = run, run.run_id
        spec_path = self.home / SPECS_DIR / f"run-{run.run_id}.toml"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = spec_path.with_name(spec_path.name + ".tmp")
        tmp.write_text(self.run_file.spec_toml)
        os.replace(tmp, spec_path)
        self.spec_path = spec_path
        if created:
            self.events.publish(pb.EVENT_KIND_RUN_STATE, detail=f"run {run.run_id} created")

    def _load_flops_table(self) -> None:
        from zoo_node.coordinator.epochs import EpochKeeper
        from zoo_node.coordinator.settlement import load_flops_table

        assert self.store is not None and self.run_file is not None
        key = FLOPS_KEY.format(self.run_file.spec.content_hash)
        cached = self.store.get_meta(key)
        if cached is not None:
            table = {k: int(v) for k, v in json.loads(cached).items()}
        else:
            table = load_flops_table(self.spec_path)
            self.store.set_meta(key, json.dumps(table, sort_keys=True))
        self.shards = list(table)
        self.keeper = EpochKeeper(
            self.chain,
            self.ledger,
            self.store,
            run_id=self.run_id,
            flops_per_sample=table,
            min_nodes=self.run_file.settlement.min_nodes,
            claims_dir=self.home / CLAIMS_DIR,
            require_joined=self.options.require_joined,
        )

    async def _load_state(self) -> None:
        assert self.store is not None
        records = await self.db(self.store.nodes)
        self.book = NodeBook(self.cfg.swarm.peer_timeout_s, records)
        self._bindings = await self.db(self.store.bindings, self.run_id)
        totals = await self.db(self.store.receipt_totals, self.run_id)
        self.receipts_heard, self.receipts_pending, self.tokens = totals.heard, totals.pending, totals.tokens
        await self._refresh_settled()

    async def _refresh_settled(self) -> None:
        """Load the figures of epochs settled since the last call."""
        reader = self._ledger_reader
        last = await self.db(reader.last_epoch, self.run_id)
        for epoch in range(max(self._settled, default=0) + 1, last + 1):
            settled = await self.db(reader.epoch, self.run_id, epoch)
            if settled is None:
                continue
            counts = settled.report.get("counts", {})
            gpu, cpu = settled_hours([settled.report])
            self._settled[epoch] = SettledFigures(
                epoch, int(counts.get("accepted", 0)), int(counts.get("rejected", 0)), gpu, cpu,
                settled_mfu(settled.report),
            )  # fmt: skip

    async def _start_api(self) -> None:
        from zoo_node.control.node_service import read_or_create_token
        from zoo_node.coordinator.service import CoordinatorApi

        coordinator = self.cfg.coordinator
        token = read_or_create_token(resolve_in_home(self.home, coordinator.admin_token_file))
        self.api = CoordinatorApi(self, admin_token=token, max_request_bytes=coordinator.max_request_bytes)
        self.address = await self.api.start(coordinator.listen)
        path = self.home / ADDRESS_FILE
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.address + "\n")
        os.replace(tmp, path)

    async def _start_swarm(self) -> None:
        from zoo_node.control.swarm import SwarmSettings
        from zoo_node.control.swarm_thread import SwarmThread

        assert self.key is not None
        topics = RunTopics(self.run_id)
        swarm = self.cfg.swarm
        self.guard = GossipGuard(
            topics,
            max_message_bytes=swarm.max_message_bytes,
            max_age_s=max(2 * swarm.peer_timeout_s, 120.0),
            counters=DropCounters(),
            on_unregistered=self._unregistered_seen,
        )
        self._rate_limit = rate_limit_per_topic(1, swarm.heartbeat_interval_s)
        self.swarm = SwarmThread(
            SwarmSettings(
                seed=self.key.private.private_bytes_raw(),
                listen_multiaddrs=list(swarm.listen_multiaddrs),
                topics=topics.all(),
                params=GossipParams(rate_limit_per_topic=self._rate_limit),
            ),
            self.guard,
            self._on_accept,
        )
        await self.swarm.start()
        logger.info("libp2p host %s listening on %s", self.key.peer_id, ", ".join(self.swarm.listen_multiaddrs))

    def _start_background(self) -> None:
        for loop in (
            self._receipt_writer,
            self._registry_loop,
            self._connect_loop,
            self._sweep_loop,
            self._sample_loop,
            self._settle_loop,
            self._notify_loop,
        ):
            self._spawn(loop())

    # ---- gossip in -------------------------------------------------------------------------------------------
    def _unregistered_seen(self, peer_id: str) -> None:
        # Called in the swarm thread: the sender may have registered since the last refresh.
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._registry_wanted.set)

    def _on_accept(self, accepted: Accepted) -> None:
        self.messages_in[accepted.kind] += 1
        if accepted.kind == HEARTBEAT:
            self._on_heartbeat(accepted)
        elif accepted.kind == RECEIPT:
            self._heard.append((accepted.origin, heard_receipt(accepted.envelope.receipt.receipt)))
            self._heard_wanted.set()

    def _on_heartbeat(self, accepted: Accepted) -> None:
        assert self.book is not None and self.store is not None
        heartbeat = accepted.envelope.heartbeat
        loss, mfu = reported_figures(heartbeat)
        binding = accepted.binding
        data_peer_id = binding.data_peer_id if binding is not None else ""
        change = self.book.observe(
            accepted.origin,
            operator=heartbeat.operator,
            shard=heartbeat.shard,
            throughput=heartbeat.throughput,
            health=heartbeat.health,
            data_peer_id=data_peer_id,
            version=heartbeat.version,
            multiaddrs=list(heartbeat.multiaddrs),
            loss=loss,
            mfu=mfu,
        )
        if data_peer_id and self._bindings.get(data_peer_id) != accepted.origin:
            self._bindings[data_peer_id] = accepted.origin
            self._spawn(self.db(self.store.add_binding, data_peer_id, accepted.origin, self.run_id))
        if change is not None:
            kind = pb.EVENT_KIND_NODE_JOINED if change == "joined" else pb.EVENT_KIND_NODE_RETURNED
            detail = f"{change}: shard {heartbeat.shard or '-'}, operator {heartbeat.operator}"
            self.events.publish(kind, peer_id=accepted.origin, detail=detail)
            logger.info("node %s %s (shard %s)", accepted.origin, change, heartbeat.shard or "-")

    async def _receipt_writer(self) -> None:
        """Commit heard receipts (group commit: whatever arrived while the last commit ran goes in one fsync), then
        count them. A receipt is counted, and shown, only once it is durable."""
        assert self.book is not None and self.store is not None
        while True:
            await self._heard_wanted.wait()
            self._heard_wanted.clear()
            batch, self._heard = self._heard, []
            if not batch:
                continue
            rows = [
                dict(run_id=self.run_id, announcer=origin, digest=h.digest, shard=h.shard, round=h.round,
                     tokens=h.tokens, flops=h.flops, seconds=h.seconds, device=h.device, receipt=h.blob)
                for origin, h in batch
            ]  # fmt: skip
            try:
                results = await self.db(self.store.add_receipts, rows)
            except ZooError as exc:
                logger.error("receipts not stored (retrying in 1 s): %s", exc)
                self._heard = batch + self._heard
                await asyncio.sleep(1.0)
                self._heard_wanted.set()
                continue
            for (origin, heard), (receipt_id, new) in zip(batch, results, strict=True):
                if not new:
                    self.receipts_duplicate += 1
                    continue
                self.receipts_heard += 1
                self.receipts_pending += 1
                self.tokens += heard.tokens
                self.book.count_receipt(origin)
                self.events.publish(
                    pb.EVENT_KIND_RECEIPT,
                    peer_id=origin,
                    detail=f"receipt {receipt_id}: {heard.shard} round {heard.round}"
                    + ("" if heard.parsed else " (malformed)"),
                )

    # ---- loops -----------------------------------------------------------------------------------------------
    async def refresh_registry(self) -> int:
        """Re-read the registered nodes (who may gossip, where to dial) and the run; keeps the old view on failure."""
        from zoo_node.control.chain_link import ChainDirectory

        assert self.guard is not None
        try:
            nodes = await asyncio.to_thread(ChainDirectory(self.chain).registered_nodes)
            run = await asyncio.to_thread(self.chain.runs.get_run, self.run_id)
        except Exception as exc:
            logger.warning("cannot read the chain (keeping the last view): %s", exc)
            return len(self._registered)
        self._registered = {node.peer_id: node for node in nodes}
        self.guard.set_registered({*self._registered, self.key.peer_id})
        if run is not None and self.run is not None and run.status != self.run.status:
            self.events.publish(pb.EVENT_KIND_RUN_STATE, detail=f"run {self.run_id} is {run.status.name.lower()}")
        if run is not None:
            self.run = run
        limit = rate_limit_per_topic(len(self._registered), self.cfg.swarm.heartbeat_interval_s)
        if limit != self._rate_limit and self.swarm is not None and self.swarm.running:
            await self.swarm.set_rate_limit(limit)
            self._rate_limit = limit
        return len(self._registered)

    async def _registry_loop(self) -> None:
        refreshed = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registry_wanted.wait(), self.cfg.swarm.registry_refresh_s)
            self._registry_wanted.clear()
            # A flood of unregistered senders must not become a flood of RPC calls.
            wait = refreshed + 2.0 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.refresh_registry()
            refreshed = time.monotonic()

    async def _maintain_connections(self) -> None:
        from zoo_node.control.swarm_thread import SwarmStopped

        assert self.swarm is not None
        try:
            self._connected = await self.swarm.connected_peers()
        except SwarmStopped:
            return
        missing = self.cfg.swarm.target_connections - len(self._connected)
        if missing <= 0:
            return
        now = time.monotonic()
        targets = [
            (peer, addrs)
            for peer, node in self._registered.items()
            if peer not in self._connected
            and (addrs := self._dial_addrs(node))
            and self._dial_after.get(peer, (0.0, 0.0))[0] <= now
        ]
        random.shuffle(targets)
        await asyncio.gather(*(self._dial(peer, addrs) for peer, addrs in targets[:missing]))
        with contextlib.suppress(SwarmStopped):
            self._connected = await self.swarm.connected_peers()

    def _dial_addrs(self, node: RegisteredNode) -> list[str]:
        """Where to dial a registered node: the multiaddrs it publishes on chain, else those its last heartbeat
        (remembered across restarts) announced."""
        addrs = dialable(node)
        record = self.book.get(node.peer_id) if self.book is not None else None
        if not addrs and record is not None:
            addrs = dialable(RegisteredNode(node.peer_id, node.operator, tuple(record.multiaddrs)))
        return addrs

    async def _dial(self, peer: str, addrs: list[str]) -> None:
        from zoo_node.control.swarm import DialError

        assert self.swarm is not None
        for addr in addrs:
            try:
                await self.swarm.dial(addr)
                self._dial_after.pop(peer, None)
                return
            except DialError as exc:
                logger.debug("dial %s failed: %s", addr, exc)
        _, delay = self._dial_after.get(peer, (0.0, 1.0))
        self._dial_after[peer] = (time.monotonic() + delay, min(delay * 2, 60.0))

    async def _connect_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, min(5.0, self.cfg.swarm.heartbeat_interval_s)))
            await self._maintain_connections()

    async def _sweep_loop(self) -> None:
        assert self.book is not None
        while True:
            for peer_id in self.book.sweep():
                logger.info("node %s gone (silent for %.0f s)", peer_id, self.book.timeout_s)
                self.events.publish(
                    pb.EVENT_KIND_NODE_GONE, peer_id=peer_id, detail=f"silent for {self.book.timeout_s:.0f} s"
                )
            await asyncio.sleep(min(1.0, self.book.timeout_s / 5))

    def _alive_nodes(self) -> list[AliveNode]:
        assert self.book is not None
        return [AliveNode(r.peer_id, r.shard, r.throughput, r.loss, r.mfu) for r in self.book.alive()]

    async def sample(self) -> RunPoint:
        """Take one sample of the run's series and save it with the nodes that changed."""
        assert self.book is not None and self.store is not None
        now = time.time()
        alive = self._alive_nodes()
        coverage = shard_coverage(self.shards, alive)
        alive_count, gone_count = self.book.counts()
        gpu_hours, cpu_hours = await self.device_hours()
        point = RunPoint(
            t=now,
            nodes_alive=alive_count,
            nodes_gone=gone_count,
            coverage=coverage_fraction(self.shards, coverage),
            throughput=sum(max(n.throughput, 0.0) for n in alive),
            loss=swarm_mean(alive, lambda n: n.loss),
            mfu=swarm_mean(alive, lambda n: n.mfu),
            tokens=self.tokens,
            shards={c.shard: (len(c.replicas), c.throughput) for c in coverage},
            receipts=self.receipts_heard,
            gpu_hours=gpu_hours,
            cpu_hours=cpu_hours,
        )
        node_points = [NodePoint(now, n.peer_id, n.throughput, n.loss, n.mfu) for n in alive]
        await self.db(self.store.save_nodes, self.book.take_dirty(), node_points)
        await self.db(self.store.add_run_point, point)
        return point

    async def device_hours(self) -> tuple[float, float]:
        """(GPU-hours, CPU-hours) of the run: credited in settled epochs, plus the pending receipts' own seconds."""
        assert self.store is not None
        gpu, cpu = pending_hours(await self.db(self.store.pending_device_seconds, self.run_id))
        settled = self._settled.values()
        return gpu + sum(s.gpu_hours for s in settled), cpu + sum(s.cpu_hours for s in settled)

    async def _sample_loop(self) -> None:
        assert self.store is not None
        pruned = time.monotonic()
        while True:
            await asyncio.sleep(self.cfg.coordinator.sample_interval_s)
            await self.sample()
            if time.monotonic() - pruned > 600:
                await self.db(self.store.prune_node_points, time.time() - NODE_SERIES_RETENTION_S)
                pruned = time.monotonic()

    async def settle_now(self) -> list[pb.EpochSummary]:
        """Settle every ended epoch (and finish an interrupted settlement); returns the epochs settled."""
        from zoo_node.coordinator.views import epoch_summary

        assert self.keeper is not None and self.store is not None
        async with self._settle_lock:
            try:
                outcomes = await asyncio.to_thread(self.keeper.settle_due)
                block_time = await asyncio.to_thread(self.keeper.chain_now)
                self._chain_ahead_s = max(0.0, block_time - time.time())
            except ZooError as exc:
                self.settlement_problem = str(exc)
                logger.error("settlement failed (will retry): %s", exc)
                raise
            except Exception as exc:  # an RPC or database failure we have no error class for: retry later
                self.settlement_problem = f"{type(exc).__name__}: {exc}"
                logger.error("settlement failed (will retry): %r", exc, exc_info=True)
                raise CoordinatorError(f"settlement failed: {self.settlement_problem}") from None
            self.settlement_problem = ""
            summaries = []
            if outcomes:
                totals = await self.db(self.store.receipt_totals, self.run_id)
                self.receipts_pending = totals.pending
                await self._refresh_settled()
                times = await self.db(self.store.settled_times, self.run_id)
                for outcome in outcomes:
                    settled = await self.db(self._ledger_reader.epoch, self.run_id, outcome.epoch)
                    if settled is not None:
                        summaries.append(epoch_summary(settled, times.get(outcome.epoch, 0.0)))
                    self.events.publish(
                        pb.EVENT_KIND_EPOCH_SETTLED,
                        epoch=outcome.epoch,
                        detail=f"{outcome.receipts} receipts: {outcome.accepted} accepted, {outcome.rejected} "
                        f"rejected; paid {outcome.paid} wei" + (" (recovered)" if outcome.recovered else ""),
                    )
            return summaries

    async def _settle_loop(self) -> None:
        while True:
            with contextlib.suppress(ZooError):
                await self.settle_now()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settle_wanted.wait(), self.cfg.coordinator.settle_poll_s)
            self._settle_wanted.clear()

    def status_line(self) -> str:
        alive, gone = self.book.counts() if self.book is not None else (0, 0)
        settled = max(self._settled, default=0)
        return f"run {self.run_id}: {alive} nodes alive, {gone} gone, {self.receipts_pending} receipts pending, " + (
            f"epoch {settled} settled" if settled else "no epoch settled"
        )

    async def _notify_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s or 10.0
        while True:
            if self.swarm is not None and self.swarm.running:
                self.notifier.watchdog()
            self.notifier.status(self.status_line())
            await asyncio.sleep(min(interval, 10.0))

    # ---- CoordinatorBackend ------------------------------------------------------------------------------
    async def list_nodes(self, alive_only: bool) -> pb.ListNodesReply:
        assert self.book is not None
        now = time.time()
        reply = pb.ListNodesReply()
        for record in self.book.records():
            alive = self.book.is_alive(record.peer_id)
            if alive or not alive_only:
                reply.nodes.append(node_view(record, alive=alive, now=now))
        reply.alive, reply.gone = self.book.counts()
        return reply

    async def get_node(self, peer_id: str, max_points: int) -> pb.NodeView | None:
        assert self.book is not None and self.store is not None
        record = self.book.get(peer_id)
        if record is None:
            return None
        series = await self.db(self.store.node_points, peer_id, 0.0, max_points)
        return node_view(
            record, alive=self.book.is_alive(peer_id), now=time.time(), series=series, max_points=max_points
        )

    def current_epoch(self, now: float | None = None) -> int:
        if self.run is None:
            return 0
        now = (time.time() if now is None else now) + self._chain_ahead_s
        if now < self.run.start_time:
            return 1
        return int((now - self.run.start_time) // self.run.epoch_length_s) + 1

    async def get_run(self, max_points: int, since_unix: float) -> pb.RunView:
        from web3 import Web3

        assert self.book is not None and self.store is not None and self.run is not None
        assert self.run_file is not None and self.swarm is not None
        alive = self._alive_nodes()
        coverage = shard_coverage(self.shards, alive)
        alive_count, gone_count = self.book.counts()
        current = self.current_epoch()
        last_settled = max(self._settled, default=0)
        gpu_hours, cpu_hours = await self.device_hours()
        mfu = swarm_mean(alive, lambda n: n.mfu)
        if mfu is None and last_settled:
            mfu = self._settled[last_settled].mfu
        loss = swarm_mean(alive, lambda n: n.loss)
        view = pb.RunView(
            run_id=self.run_id,
            name=self.run_file.spec.name,
            spec_hash=Web3.to_hex(self.run.spec_hash),
            status=self.run.status.name.lower(),
            coordinator=self.run.coordinator,
            epoch_length_s=self.run.epoch_length_s,
            reward_per_epoch_wei=str(self.run.reward_per_epoch),
            start_time=self.run.start_time,
            current_epoch=current,
            last_settled_epoch=last_settled,
            next_epoch_end_unix=float(self.run.epoch_end(current)) - self._chain_ahead_s,
            nodes_alive=alive_count,
            nodes_gone=gone_count,
            coverage=coverage_fraction(self.shards, coverage),
            throughput=sum(max(n.throughput, 0.0) for n in alive),
            tokens=self.tokens,
            loss=float("nan") if loss is None else loss,
            mfu=float("nan") if mfu is None else mfu,
            gpu_hours=gpu_hours,
            cpu_hours=cpu_hours,
            coordinator_peer_id=self.key.peer_id if self.key is not None else "",
            coordinator_multiaddrs=list(self.swarm.listen_multiaddrs),
            settlement_problem=self.settlement_problem,
            receipts_duplicate=self.receipts_duplicate,
        )
        for c in coverage:
            view.shards.add(shard=c.shard, replicas=list(c.replicas), throughput=c.throughput, covered=c.covered)
        view.receipts.heard = self.receipts_heard
        view.receipts.pending = self.receipts_pending
        view.receipts.accepted = sum(s.accepted for s in self._settled.values())
        view.receipts.rejected = sum(s.rejected for s in self._settled.values())
        run_series(view, await self.db(self.store.run_points, since_unix, max_points), max_points)
        return view

    def run_spec(self) -> pb.RunSpecReply:
        assert self.run_file is not None
        return pb.RunSpecReply(toml=self.run_file.spec_toml, spec_hash="0x" + self.run_file.spec.content_hash)

    async def list_epochs(self) -> pb.ListEpochsReply:
        from zoo_node.coordinator.views import epoch_summary

        assert self.store is not None
        # Only epochs whose settlement finished (receipts marked, figures loaded): what GetRun counts too.
        epochs = [e for e in await self.db(self._ledger_reader.epochs, self.run_id) if e.epoch in self._settled]
        times = await self.db(self.store.settled_times, self.run_id)
        return pb.ListEpochsReply(epochs=[epoch_summary(e, times.get(e.epoch, 0.0)) for e in epochs])

    async def get_epoch(self, epoch: int) -> pb.EpochView | None:
        from zoo_node.coordinator.views import epoch_view

        assert self.store is not None
        if epoch not in self._settled:
            return None
        settled = await self.db(self._ledger_reader.epoch, self.run_id, epoch)
        if settled is None:
            return None
        times = await self.db(self.store.settled_times, self.run_id)
        return epoch_view(settled, json.dumps(settled.report, sort_keys=True), times.get(epoch, 0.0))

    async def set_run_state(self, action: str, reason: str) -> str:
        from zoo_node.chain.errors import ChainError

        calls = {"pause": self.chain.runs.pause_run, "resume": self.chain.runs.resume_run,
                 "close": self.chain.runs.close_run}  # fmt: skip
        try:
            await asyncio.to_thread(calls[action], self.run_id)
        except ChainError as exc:
            raise CoordinatorError(f"{action} run {self.run_id}: {exc}") from None
        logger.info("run %d: %s (%s)", self.run_id, action, reason or "no reason given")
        await self.refresh_registry()
        assert self.run is not None
        return self.run.status.name.lower()

    # ---- stop ------------------------------------------------------------------------------------------------
    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def request_shutdown(self, reason: str, exit_code: int = 0) -> None:
        if not self._shutdown.is_set():
            logger.info("shutting down: %s", reason)
            self.exit_code = exit_code
            self._shutdown.set()

    async def serve(self, stop_bound_s: float = 30.0) -> int:
        """Wait for a shutdown request, then stop within `stop_bound_s`; returns the exit code."""
        await self._shutdown.wait()
        try:
            await asyncio.wait_for(self.close(), stop_bound_s)
        except TimeoutError:
            logger.error("shutdown took longer than %.0f s; exiting anyway", stop_bound_s)
        return self.exit_code

    async def close(self) -> None:
        """Stop the loops, save what changed, stop the API and the host, close the databases."""
        self.notifier.stopping(self.status_line())
        if self.api is not None:
            with contextlib.suppress(Exception):
                await self.api.set_serving(False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.book is not None and self.store is not None:
            with contextlib.suppress(Exception):
                await self.db(self.store.save_nodes, self.book.take_dirty(), [])
        if self.api is not None:
            await self.api.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.home / ADDRESS_FILE).unlink()
        if self.swarm is not None:
            await self.swarm.stop()
        for db in (self.store, self.ledger, self._ledger_reader):
            if db is not None:
                with contextlib.suppress(Exception):
                    await self.db(db.close)
        self._db.shutdown(wait=True)
        self.notifier.close()


async def run_coordinator(options: CoordinatorOptions) -> int:
    """Start the coordinator and run it until SIGTERM/SIGINT; returns the exit code."""
    coordinator = Coordinator(options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, coordinator.request_shutdown, f"got {signal.Signals(signum).name}")
    await coordinator.start()
    return await coordinator.serve()


def main(options: CoordinatorOptions) -> int:
    return asyncio.run(run_coordinator(options))

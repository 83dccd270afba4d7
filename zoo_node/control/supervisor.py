"""The `zoo-node join` supervisor: one asyncio process that holds the node together.

It runs the py-libp2p swarm (in its trio thread, see swarm_thread), heartbeats and the membership view, the
registry refresh and connection upkeep, the receipts journal and its gossip, the worker process (worker_process),
the WorkerService and NodeService gRPC servers, Prometheus metrics and systemd notifications.

Concurrency: everything here runs on the asyncio loop; blocking work goes to threads (chain RPC to the default
executor, SQLite to one dedicated journal thread). `zoo_node.control.join` drives the start-up steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from zoo_node import __version__
from zoo_node.config import NodeConfig, load_config, resolve_in_home
from zoo_node.control.addresses import publishable
from zoo_node.control.gossip_params import GossipParams, own_publish_budget, rate_limit_per_topic
from zoo_node.control.guard import Accepted, DropCounters, GossipGuard
from zoo_node.control.journal import JOURNAL_FILE, ReceiptJournal
from zoo_node.control.membership import MembershipView
from zoo_node.control.messages import ControlKey, MonotonicMillis, encode_envelope, sign_worker_binding
from zoo_node.control.registry import NodeDirectory, RegisteredNode, dialable
from zoo_node.control.sd_notify import SystemdNotifier
from zoo_node.control.swarm import DialError, SwarmSettings
from zoo_node.control.swarm_thread import SwarmStopped, SwarmThread
from zoo_node.control.topics import HEARTBEAT, RECEIPT, RunTopics
from zoo_node.control.waiting import wait_event
from zoo_node.control.worker_process import WorkerSpec, WorkerSupervisor
from zoo_node.control.worker_service import WorkerServicer, start_worker_server
from zoo_node.proto import gossip_pb2, node_pb2, worker_pb2

logger = logging.getLogger(__name__)
WORKER_SOCKET = "worker.sock"
# Unix socket paths longer than this do not fit in sockaddr_un.
MAX_SOCKET_PATH = 107
# Settled receipts are kept this long (for `status` and audits) before they are pruned.
SETTLED_KEEP_S = 30 * 24 * 3600.0
# Configuration that is applied on SIGHUP; anything else changed is reported as needing a restart.
RELOADABLE = {
    "log_level",
    "swarm.bootstrap_peers",
    "swarm.heartbeat_interval_s",
    "swarm.peer_timeout_s",
    "swarm.max_message_bytes",
    "swarm.registry_refresh_s",
    "swarm.target_connections",
    "worker.restart_backoff_s",
    "worker.restart_backoff_max_s",
    "worker.report_timeout_s",
    "worker.stop_timeout_s",
}


@dataclass
class NodeOptions:
    """Everything the supervisor is started with (join resolves it from config, keys, flags and the chain)."""

    home: Path
    config: NodeConfig
    run_id: int
    control_key: ControlKey
    operator: str
    data_peer_id: str
    directory: NodeDirectory
    config_flags: dict[str, Any] = field(default_factory=dict)
    extra_bootstrap: Sequence[str] = ()
    worker_mode: str = "full"  # full | lifecycle | none
    shard: str = ""
    spec_hash: bytes = b""
    run_spec: Path | None = None  # checked against spec_hash by join; the worker trains it
    subreaper: bool = False


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _check_socket_path(path: Path) -> Path:
    from zoo_node.errors import ConfigError

    if len(str(path)) > MAX_SOCKET_PATH:
        raise ConfigError(f"{path}: unix socket path longer than {MAX_SOCKET_PATH} bytes (use a shorter home)")
    return path


class NodeSupervisor:
    """The running node. Construct, then `start_*` in order (see zoo_node.control.join), then `serve()`."""

    def __init__(self, options: NodeOptions, *, notifier: SystemdNotifier | None = None) -> None:
        self.options = options
        self.home = options.home
        self.config = options.config
        self.run_id = options.run_id
        self.key = options.control_key
        self.peer_id = options.control_key.peer_id
        self.notifier = notifier or SystemdNotifier()
        self.topics = RunTopics(options.run_id)
        self.state = node_pb2.NODE_STATE_STARTING
        self.started_at = time.monotonic()
        self.exit_code = 0

        swarm_config = self.config.swarm
        self.counters = DropCounters()
        self.guard = GossipGuard(
            self.topics,
            max_message_bytes=swarm_config.max_message_bytes,
            max_age_s=self._max_age(),
            counters=self.counters,
            on_unregistered=self._unregistered_seen,
        )
        self.guard.set_registered([self.peer_id])
        self.membership = MembershipView(self.peer_id, swarm_config.peer_timeout_s)
        self.messages_in: Counter[str] = Counter()
        self.messages_out: Counter[str] = Counter()
        self._registered: dict[str, RegisteredNode] = {}
        self._rate_limit = rate_limit_per_topic(1, swarm_config.heartbeat_interval_s)
        self._clock_ms = MonotonicMillis()
        self._binding = sign_worker_binding(self.key, self.run_id, options.data_peer_id)
        self._dial_after: dict[str, tuple[float, float]] = {}  # peer -> (not before, current delay)
        self._connected: set[str] = set()
        self._registry_wanted = asyncio.Event()
        # `zoo-node rewards show` figures of this run, read in the background (the chain is slow or may be down)
        self.rewards: dict[str, Any] | None = None
        self.rewards_read_at: float | None = None
        self.rewards_problem = ""
        self._registry_refreshed_at = 0.0
        self._receipts_wanted = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published: list[str] | None = None

        self.swarm = SwarmThread(
            SwarmSettings(
                seed=self.key.private.private_bytes_raw(),
                listen_multiaddrs=list(swarm_config.listen_multiaddrs),
                topics=self.topics.all(),
                params=GossipParams(rate_limit_per_topic=self._rate_limit),
            ),
            self.guard,
            self._on_accept,
        )
        self.worker_socket = _check_socket_path(self.home / "run" / WORKER_SOCKET)
        self.worker = WorkerSupervisor(self._worker_spec(self.config), assignment_extras=self._data_bootstrap)
        self.worker.on_change = self._worker_changed
        self._journal_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-journal")
        self.journal: ReceiptJournal | None = None
        self.receipts_total = 0
        self.receipts_unsettled = 0
        self._worker_server: grpc.aio.Server | None = None
        self.api = None  # zoo_node.control.node_service.NodeApi
        self.metrics = None  # zoo_node.control.metrics.MetricsServer

    # --- configuration ---------------------------------------------------------------------------------------

    def _max_age(self) -> float:
        return max(2 * self.config.swarm.peer_timeout_s, 120.0)

    def _worker_spec(self, config: NodeConfig) -> WorkerSpec:
        extra = []
        if self.options.worker_mode != "full":
            extra = ["--mode", self.options.worker_mode]
        elif self.options.run_spec is not None:
            extra = ["--run-spec", str(self.options.run_spec)]
        return WorkerSpec(
            home=self.home,
            socket_path=self.worker_socket,
            run_id=self.run_id,
            shard=self.options.shard,
            spec_hash=self.options.spec_hash,
            device=config.worker.device,
            backoff_initial_s=config.worker.restart_backoff_s,
            backoff_max_s=max(config.worker.restart_backoff_max_s, config.worker.restart_backoff_s),
            report_timeout_s=config.worker.report_timeout_s,
            stop_timeout_s=config.worker.stop_timeout_s,
            extra_args=extra,
            log_level=config.log_level,
        )

    @property
    def public_multiaddrs(self) -> list[str]:
        """What others should dial: announce_multiaddrs if set, else where the host listens (0.0.0.0 expanded)."""
        announce = self.config.swarm.announce_multiaddrs
        if announce:
            return dialable(RegisteredNode(self.peer_id, "", tuple(announce)))
        if self._published is None:
            self._published = publishable(list(self.swarm.listen_multiaddrs))
        return self._published

    # --- start-up steps ----------------------------------------------------------------------------------------

    async def start_api(self) -> None:
        """NodeService (unix socket, optional TCP), health, reflection, metrics: `status` works from here on."""
        from zoo_node.control.metrics import MetricsServer
        from zoo_node.control.node_service import NodeApi

        (self.home / "run").mkdir(mode=0o700, exist_ok=True)
        api = self.config.api
        self.api = NodeApi(self)
        await self.api.start(
            _check_socket_path(resolve_in_home(self.home, api.socket)),
            tcp_port=api.tcp_port,
            token_file=resolve_in_home(self.home, api.token_file),
        )
        if api.metrics_port is not None:
            self.metrics = MetricsServer(self, asyncio.get_running_loop())
            self.metrics.start(api.metrics_port)

    async def start_swarm(self) -> list[str]:
        """Start the libp2p host and join the run's topics; returns the listen multiaddrs."""
        self._loop = asyncio.get_running_loop()
        await self.swarm.start()
        logger.info("libp2p host %s listening on %s", self.peer_id, ", ".join(self.swarm.listen_multiaddrs))
        return self.swarm.listen_multiaddrs

    async def refresh_registry(self) -> int:
        """Re-read the registered nodes; returns how many there are. Keeps the old view if the chain is down."""
        try:
            nodes = await asyncio.to_thread(self.options.directory.registered_nodes)
        except Exception as exc:
            logger.warning("cannot read the registered nodes (keeping the last list): %s", exc)
            return len(self._registered)
        self._registry_refreshed_at = time.monotonic()
        registered = {node.peer_id: node for node in nodes}
        self.guard.set_registered({*registered, self.peer_id})
        for member in self.membership.members():
            if member.peer_id not in registered:
                self.membership.forget(member.peer_id)
        self._registered = registered
        limit = rate_limit_per_topic(len(registered), self.config.swarm.heartbeat_interval_s)
        if limit != self._rate_limit and self.swarm.running:
            await self.swarm.set_rate_limit(limit)
            self._rate_limit = limit
        return len(registered)

    async def bootstrap(self) -> int:
        """Dial configured bootstrap peers and registered nodes; returns how many peers are connected."""
        await self._maintain_connections()
        return len(self._connected)

    async def open_journal(self) -> None:
        self.journal = await self.journal_call(ReceiptJournal, self.home / JOURNAL_FILE)
        counts = await self.refresh_journal_counts()
        if counts.ungossiped:
            self._receipts_wanted.set()

    async def start_worker_service(self) -> None:
        (self.home / "run").mkdir(mode=0o700, exist_ok=True)
        servicer = WorkerServicer(self.worker, self._append_receipt, self._receipt_journaled)
        self._worker_server = await start_worker_server(servicer, str(self.worker_socket))

    def start_background(self) -> None:
        """The node's loops: heartbeats, membership sweep, registry refresh, connections, receipts, watchdog."""
        for loop in (
            self._heartbeat_loop,
            self._sweep_loop,
            self._registry_loop,
            self._connect_loop,
            self._receipts_loop,
            self._notify_loop,
            self._rewards_loop,
        ):
            self._spawn(loop())
        if self.options.worker_mode != "none":
            self._spawn(self.worker.run())

    def mark_ready(self) -> None:
        self.state = node_pb2.NODE_STATE_RUNNING
        if self.api is not None:
            self.api.set_serving(True)
        self.notifier.ready(self.status_line())
        logger.info("node %s is up in run %d", self.peer_id, self.run_id)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a node task failed: %r", task.exception(), exc_info=task.exception())
            self.request_shutdown("internal error", exit_code=1)

    # --- gossip in and out -------------------------------------------------------------------------------------

    def _on_accept(self, accepted: Accepted) -> None:
        self.messages_in[accepted.kind] += 1
        if accepted.kind == HEARTBEAT:
            change = self.membership.observe(accepted.origin, accepted.envelope.heartbeat, accepted.binding)
            if change is not None:
                logger.info("peer %s %s (%s)", accepted.origin, change, accepted.envelope.heartbeat.operator)

    def _unregistered_seen(self, peer_id: str) -> None:
        # Called in the swarm thread: the sender may have registered since the last refresh.
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._registry_wanted.set)

    async def publish(self, kind: str, **body: Any) -> None:
        data = encode_envelope(self.peer_id, self.run_id, self._clock_ms(), **body)
        await self.swarm.publish(self.topics.topic(kind), data)
        self.messages_out[kind] += 1

    def heartbeat(self) -> gossip_pb2.Heartbeat:
        worker = self.worker.state
        heartbeat = gossip_pb2.Heartbeat(
            operator=self.options.operator,
            shard=worker.shard or self.options.shard,
            throughput=worker.progress.tokens_per_s,
            health=self.health(),
            version=__version__,
            multiaddrs=self.public_multiaddrs,
            data_multiaddrs=list(worker.resources.data_multiaddrs),
            interval_ms=int(self.config.swarm.heartbeat_interval_s * 1000),
            progress=worker_pb2.Progress(
                steps=worker.total_steps,
                tokens=worker.total_tokens,
                flops=worker.total_flops,
                tokens_per_s=worker.progress.tokens_per_s,
                mfu=worker.progress.mfu,
            ),
            metrics=worker.metrics,
        )
        heartbeat.worker.CopyFrom(self._binding)
        return heartbeat

    def health(self) -> int:
        if self.state in (node_pb2.NODE_STATE_DRAINING, node_pb2.NODE_STATE_STOPPING):
            return worker_pb2.HEALTH_DRAINING
        if self.options.worker_mode == "none":
            return worker_pb2.HEALTH_SERVING
        return self.worker.state.health

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.publish(HEARTBEAT, heartbeat=self.heartbeat())
            except SwarmStopped:
                logger.error("the libp2p host stopped: shutting down")
                self.request_shutdown("libp2p host stopped", exit_code=1)
                return
            except Exception as exc:
                logger.warning("heartbeat not published: %s", exc)
            await asyncio.sleep(self.config.swarm.heartbeat_interval_s)

    async def _sweep_loop(self) -> None:
        while True:
            for peer_id in self.membership.sweep():
                logger.info("peer %s gone (silent for %.0f s)", peer_id, self.membership.timeout_s)
            await asyncio.sleep(min(1.0, self.membership.timeout_s / 5))

    async def _registry_loop(self) -> None:
        while True:
            await wait_event(self._registry_wanted, self.config.swarm.registry_refresh_s)
            self._registry_wanted.clear()
            # A flood of unregistered senders must not turn into a flood of RPC calls.
            wait = self._registry_refreshed_at + 5.0 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.refresh_registry()
            await self.settle_receipts()

    @property
    def reward_account(self) -> str:
        """Where this node's rewards go: the owner if configured, else the operator."""
        return self.config.owner_address or self.options.operator

    async def refresh_rewards(self) -> None:
        """Re-read this run's rewards; keeps the last figures (and says why) if the chain cannot be read."""
        try:
            figures = await asyncio.to_thread(self.options.directory.rewards, self.run_id, self.reward_account)
        except Exception as exc:
            self.rewards_problem = f"cannot read the rewards (showing the last figures read): {exc}"
            logger.debug("cannot read the rewards: %s", exc)
            return
        self.rewards, self.rewards_read_at, self.rewards_problem = figures, time.monotonic(), ""

    async def _rewards_loop(self) -> None:
        while True:
            await self.refresh_rewards()
            await asyncio.sleep(self.config.swarm.registry_refresh_s)

    async def settle_receipts(self) -> int:
        """Mark receipts covered by the run's settled epochs; prune those settled long ago. Returns how many."""
        if self.journal is None:
            return 0
        try:
            until = await asyncio.to_thread(self.options.directory.settled_until, self.run_id)
        except Exception as exc:
            logger.debug("cannot read the run's settlement: %s", exc)
            return 0
        if until is None:
            return 0
        settled = await self.journal_call(self.journal.mark_settled_before, until)
        await self.journal_call(self.journal.prune_settled, SETTLED_KEEP_S)
        if settled:
            logger.info("%d receipts settled (epochs ending before %s)", settled, time.ctime(until))
            await self.refresh_journal_counts()
        return settled

    def _dial_targets(self) -> list[tuple[str, list[str]]]:
        now = time.monotonic()
        targets: dict[str, list[str]] = {}
        for node in self._registered.values():
            if node.peer_id != self.peer_id:
                targets[node.peer_id] = dialable(node)
        for addr in [*self.config.swarm.bootstrap_peers, *self.options.extra_bootstrap]:
            peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else ""
            if peer and peer != self.peer_id:
                targets.setdefault(peer, []).append(addr)
        return [
            (peer, addrs)
            for peer, addrs in targets.items()
            if addrs and peer not in self._connected and self._dial_after.get(peer, (0.0, 0.0))[0] <= now
        ]

    async def _dial(self, peer: str, addrs: list[str]) -> bool:
        for addr in addrs:
            try:
                await self.swarm.dial(addr)
                self._dial_after.pop(peer, None)
                return True
            except DialError as exc:
                logger.debug("dial %s failed: %s", addr, exc)
        _, delay = self._dial_after.get(peer, (0.0, 1.0))
        self._dial_after[peer] = (time.monotonic() + delay, min(delay * 2, 60.0))
        return False

    async def _maintain_connections(self) -> None:
        try:
            self._connected = await self.swarm.connected_peers()
        except SwarmStopped:
            return
        missing = self.config.swarm.target_connections - len(self._connected)
        if missing <= 0:
            return
        targets = self._dial_targets()
        random.shuffle(targets)
        await asyncio.gather(*(self._dial(peer, addrs) for peer, addrs in targets[:missing]))
        with contextlib.suppress(SwarmStopped):
            self._connected = await self.swarm.connected_peers()

    async def _connect_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, min(5.0, self.config.swarm.heartbeat_interval_s)))
            await self._maintain_connections()

    # --- receipts ---------------------------------------------------------------------------------------------

    async def journal_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a journal method in the journal's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._journal_executor, functools.partial(fn, *args))

    async def _append_receipt(self, receipt: worker_pb2.Receipt) -> tuple[int, bool]:
        assert self.journal is not None
        result = await self.journal_call(self.journal.append, receipt)
        await self.refresh_journal_counts()
        return result

    async def refresh_journal_counts(self):
        """The journal's counts (also kept for metrics, which must not touch SQLite from the HTTP thread)."""
        assert self.journal is not None
        counts = await self.journal_call(self.journal.counts)
        self.receipts_total, self.receipts_unsettled = counts.receipts, counts.unsettled
        return counts

    def _receipt_journaled(self, receipt_id: int, receipt: worker_pb2.Receipt) -> None:
        logger.info(
            "receipt %d journaled: run %d shard %s round %d", receipt_id, receipt.run_id, receipt.shard, receipt.round
        )
        self._receipts_wanted.set()

    async def _receipts_loop(self) -> None:
        while True:
            await wait_event(self._receipts_wanted, 30.0)
            self._receipts_wanted.clear()
            if self.journal is None:
                continue
            batch = await self.journal_call(self.journal.ungossiped, 50)
            if not batch:
                continue
            try:
                listeners = await self.swarm.topic_peers(self.topics.receipt)
            except SwarmStopped:
                return
            if not listeners:
                # Nobody would hear it yet (not connected, or the peers' subscriptions not in): look again soon.
                await asyncio.sleep(2.0)
                self._receipts_wanted.set()
                continue
            pause = 1.0 / own_publish_budget(self._rate_limit)
            for receipt_id, receipt in batch:
                try:
                    await self.publish(
                        RECEIPT, receipt=gossip_pb2.ReceiptAnnouncement(receipt=receipt, journal_id=receipt_id)
                    )
                except Exception as exc:
                    logger.warning("receipt %d not announced: %s", receipt_id, exc)
                    break
                await self.journal_call(self.journal.mark_gossiped, [receipt_id])
                await asyncio.sleep(pause)
            if len(batch) == 50:
                self._receipts_wanted.set()

    # --- worker and systemd --------------------------------------------------------------------------------

    def _data_bootstrap(self) -> list[str]:
        addrs = []
        for member in self.membership.alive():
            addrs.extend(member.data_multiaddrs)
        return addrs

    def _worker_changed(self) -> None:
        if self.state == node_pb2.NODE_STATE_RUNNING:
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        alive, gone = self.membership.counts()
        worker = worker_pb2.Health.Name(self.worker.state.health).removeprefix("HEALTH_").lower()
        state = node_pb2.NodeState.Name(self.state).removeprefix("NODE_STATE_").lower()
        return f"{state}: run {self.run_id}, {alive} peers alive, {gone} gone, worker {worker}"

    async def _notify_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s or 10.0
        while True:
            # Only a live event loop gets here: a stalled node stops petting the watchdog and systemd restarts it.
            if self.swarm.running:
                self.notifier.watchdog()
            self.notifier.status(self.status_line())
            await asyncio.sleep(min(interval, 10.0))

    # --- control ------------------------------------------------------------------------------------------

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def request_shutdown(self, reason: str, exit_code: int = 0) -> None:
        if not self._shutdown.is_set():
            logger.info("shutting down: %s", reason)
            self.exit_code = exit_code
            self._shutdown.set()

    def drain(self, reason: str) -> None:
        if self.state == node_pb2.NODE_STATE_RUNNING or self.state == node_pb2.NODE_STATE_STARTING:
            self.state = node_pb2.NODE_STATE_DRAINING
            logger.info("draining: %s", reason)
            self.worker.drain(reason)
            self.notifier.status(self.status_line())

    def reload(self) -> list[str]:
        """Re-read the configuration (SIGHUP) and apply what can change live; returns keys that need a restart.

        A bad configuration is logged and ignored: the node keeps running with the old one.
        """
        from zoo_node.errors import ZooError

        self.notifier.reloading()
        try:
            new = load_config(self.home, self.options.config_flags)
        except ZooError as exc:
            logger.error("config reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready(self.status_line())
            return []
        old_flat = _flatten(self.config.model_dump(mode="json"))
        new_flat = _flatten(new.model_dump(mode="json"))
        changed = sorted(key for key in new_flat if new_flat[key] != old_flat.get(key))
        self.config = new
        logging.getLogger().setLevel(new.log_level.upper())
        self.membership.timeout_s = new.swarm.peer_timeout_s
        self.guard.max_age_s = self._max_age()
        self.guard.max_message_bytes = new.swarm.max_message_bytes
        self.worker.reconfigure(self._worker_spec(new))
        self._registry_wanted.set()  # rate limit follows the heartbeat interval
        restart = [key for key in changed if key not in RELOADABLE]
        if changed:
            logger.info("config reloaded: %s", ", ".join(changed))
        if restart:
            logger.warning("changed settings that take effect after a restart: %s", ", ".join(restart))
        self.notifier.ready(self.status_line())
        return restart

    async def serve(self, *, stop_bound_s: float | None = None) -> int:
        """Wait for a shutdown request, then stop everything within a bound; returns the exit code."""
        await self._shutdown.wait()
        bound = stop_bound_s if stop_bound_s is not None else self.config.worker.stop_timeout_s + 15.0
        try:
            async with asyncio.timeout(bound):
                await self.close()
        except TimeoutError:
            logger.error("shutdown took longer than %.0f s; exiting anyway", bound)
        return self.exit_code

    async def close(self) -> None:
        """Drain and stop: the worker, the loops, the servers, the swarm, the journal."""
        self.state = node_pb2.NODE_STATE_STOPPING
        self.notifier.stopping(self.status_line())
        if self.api is not None:
            self.api.set_serving(False)
        if self.options.worker_mode != "none":
            await self.worker.stop("node shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._worker_server is not None:
            await self._worker_server.stop(1.0)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.worker_socket)
        await self.swarm.stop()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        if self.api is not None:
            await self.api.stop()
        if self.journal is not None:
            await self.journal_call(self.journal.close)
        self._journal_executor.shutdown(wait=True)
        self.notifier.close()

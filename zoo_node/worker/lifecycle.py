"""The worker's side of its lifecycle: register with the supervisor, report, follow its commands, exit cleanly.

The data plane plugs its training in as a work function:

    def work(ctx: WorkerContext) -> None:
        ctx.set_health(worker_pb2.HEALTH_SERVING)
        while not ctx.drain.is_set():
            ...one step...
            ctx.report_progress(steps=..., tokens=..., flops=..., tokens_per_s=..., mfu=...)
            receipt_id = ctx.submit_receipt(receipt)   # returns once the supervisor's journal holds it durably
        # drained: finish, release the shard, return

    sys.exit(run_worker(work, home=..., socket_path=..., incarnation=...))

`run_worker` sends reports in a background thread (so a long step never looks like a hang), sets `ctx.drain` on
a Drain or Stop command or SIGTERM, and `ctx.stop` on Stop, SIGTERM or when the supervisor goes away. A worker
whose supervisor vanished exits by itself after `orphan_grace_s`, even if the work function does not return.

Layering: no libp2p (grpc, psutil; the work function may use torch and hivemind).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from zoo_node.proto import worker_pb2
from zoo_node.worker.supervisor_link import SupervisorGone, SupervisorLink, snapshot_resources

logger = logging.getLogger(__name__)
EXIT_OK = 0
EXIT_WORK_FAILED = 1
EXIT_NO_SUPERVISOR = 3


class WorkerContext:
    """What a work function gets: its assignment, the drain/stop events, and ways to report."""

    def __init__(self, assignment: worker_pb2.Assignment, home: Path, link: SupervisorLink) -> None:
        self.assignment = assignment
        self.home = home
        self.drain = threading.Event()
        self.stop = threading.Event()
        self._link = link
        self._lock = threading.Lock()
        self._health = worker_pb2.HEALTH_STARTING
        self._detail = ""
        self._progress = worker_pb2.Progress()
        self._metrics: dict[str, float] = {}
        self._data_multiaddrs: list[str] = []
        self._shard = assignment.shard
        self._changed = threading.Event()

    def set_health(self, health: int, detail: str = "") -> None:
        with self._lock:
            self._health, self._detail = health, detail
        self._changed.set()

    def report_progress(
        self,
        *,
        steps: int | None = None,
        tokens: int | None = None,
        flops: float | None = None,
        tokens_per_s: float | None = None,
        mfu: float | None = None,
        **metrics: float,
    ) -> None:
        """Update the cumulative progress (since this worker started) and any named gauges."""
        with self._lock:
            for name, value in (
                ("steps", steps),
                ("tokens", tokens),
                ("flops", flops),
                ("tokens_per_s", tokens_per_s),
                ("mfu", mfu),
            ):
                if value is not None:
                    setattr(self._progress, name, value)
            self._metrics.update(metrics)

    def set_shard(self, shard: str) -> None:
        """The shard the worker holds now (when it chose or moved)."""
        with self._lock:
            self._shard = shard
        self._changed.set()

    def set_data_multiaddrs(self, addrs: list[str]) -> None:
        """Where the worker's data-plane host listens (the supervisor gossips it)."""
        with self._lock:
            self._data_multiaddrs = list(addrs)
        self._changed.set()

    def submit_receipt(self, receipt: worker_pb2.Receipt, *, timeout_s: float = 120.0) -> int:
        """Hand a round's receipt to the supervisor; returns its journal id once it is durable."""
        receipt_id, _ = self._link.submit_receipt(receipt, timeout_s=timeout_s)
        return receipt_id

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, waking early on stop; True if stop is set."""
        return self.stop.wait(timeout_s)

    def build_report(self, resources: worker_pb2.WorkerResources | None) -> worker_pb2.WorkerReport:
        with self._lock:
            report = worker_pb2.WorkerReport(health=self._health, detail=self._detail, shard=self._shard)
            report.progress.CopyFrom(self._progress)
            report.metrics.update(self._metrics)
            if resources is not None:
                report.resources.CopyFrom(resources)
                report.resources.data_multiaddrs[:] = self._data_multiaddrs
        return report


class _Reporter(threading.Thread):
    """Reports every `interval_s` (and at once on a health change); gives up the supervisor after `grace_s`."""

    def __init__(self, ctx: WorkerContext, link: SupervisorLink, interval_s: float, grace_s: float) -> None:
        super().__init__(name="zoo-worker-reporter", daemon=True)
        self.ctx, self.link, self.interval_s, self.grace_s = ctx, link, interval_s, grace_s
        self.lost = threading.Event()
        self._last_resources: bytes | None = None

    def _resources(self) -> worker_pb2.WorkerResources | None:
        resources = snapshot_resources(exclude_sockets=(self.link.socket_path,))
        resources.data_multiaddrs[:] = self.ctx._data_multiaddrs
        blob = resources.SerializeToString(deterministic=True)
        if blob == self._last_resources:
            return None
        self._last_resources = blob
        return resources

    def run(self) -> None:
        last_ok = time.monotonic()
        while not self.lost.is_set():
            try:
                self.link.report(self.ctx.build_report(self._resources()))
                last_ok = time.monotonic()
            except SupervisorGone as exc:
                logger.error("%s", exc)
                self.lost.set()
                break
            except Exception as exc:
                self._last_resources = None  # resend them with the next report that gets through
                logger.warning("report to the supervisor failed: %s", exc)
                if time.monotonic() - last_ok > self.grace_s:
                    self.lost.set()
                    break
            self.ctx._changed.wait(self.interval_s)
            self.ctx._changed.clear()
        self.ctx.drain.set()
        self.ctx.stop.set()


def _follow_commands(ctx: WorkerContext, link: SupervisorLink, lost: threading.Event) -> None:
    for command in link.commands():
        kind = command.WhichOneof("kind")
        if kind == "drain":
            logger.info("supervisor: drain (%s)", command.drain.reason)
            ctx.drain.set()
            ctx.set_health(worker_pb2.HEALTH_DRAINING)
        elif kind == "stop":
            logger.info("supervisor: stop (%s)", command.stop.reason)
            ctx.drain.set()
            ctx.stop.set()
            return
    # The stream ended without a Stop: the supervisor is gone.
    if not ctx.stop.is_set():
        logger.error("the supervisor went away; stopping")
        lost.set()
        ctx.drain.set()
        ctx.stop.set()


def _exit_if_orphaned(ctx: WorkerContext, lost: threading.Event, grace_s: float) -> None:
    lost.wait()
    time.sleep(grace_s)
    logger.error("no supervisor for %.0f s and the work did not stop: exiting", grace_s)
    os._exit(EXIT_NO_SUPERVISOR)


WorkFn = Callable[[WorkerContext], None]


def run_worker(
    work: WorkFn,
    *,
    home: Path,
    socket_path: str,
    incarnation: int,
    data_peer_id: str = "",
    orphan_grace_s: float = 10.0,
) -> int:
    """Run `work` under the supervisor at `socket_path`; returns the process exit code."""
    link = SupervisorLink(socket_path, incarnation)
    try:
        reply = link.register(data_peer_id)
    except SupervisorGone as exc:
        logger.error("%s", exc)
        return EXIT_NO_SUPERVISOR
    ctx = WorkerContext(reply.assignment, home, link)
    interval = reply.report_interval_s or 5.0
    reporter = _Reporter(ctx, link, interval, grace_s=max(3 * interval, orphan_grace_s))
    commands = threading.Thread(
        target=_follow_commands, args=(ctx, link, reporter.lost), name="zoo-worker-commands", daemon=True
    )
    watchdog = threading.Thread(
        target=_exit_if_orphaned, args=(ctx, reporter.lost, orphan_grace_s), name="zoo-worker-watchdog", daemon=True
    )

    def on_signal(signum: int, _frame) -> None:
        logger.info("got %s: draining and stopping", signal.Signals(signum).name)
        ctx.drain.set()
        ctx.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    reporter.start()
    commands.start()
    watchdog.start()
    logger.info(
        "worker %d of run %d, shard %s: started", incarnation, reply.assignment.run_id, reply.assignment.shard or "-"
    )
    code = EXIT_OK
    try:
        work(ctx)
    except Exception as exc:
        logger.exception("the work function failed")
        ctx.set_health(worker_pb2.HEALTH_DEGRADED, f"{type(exc).__name__}: {exc}")
        code = EXIT_WORK_FAILED
    else:
        ctx.set_health(worker_pb2.HEALTH_STOPPED)
    ctx.drain.set()
    ctx.stop.set()  # before closing the link, so that its end does not read as the supervisor going away
    if not reporter.lost.is_set():
        with contextlib.suppress(Exception):  # last words: the final health and progress
            link.report(ctx.build_report(None))
    link.close()
    return code

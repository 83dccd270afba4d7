"""The supervisor's side of the worker's lifecycle: spawn, watch, restart with backoff, kill, clean up.

The worker is `python -m zoo_node.worker`, started in its own session (process group) with a private TMPDIR in the
home. It must register and then report at least every `report_timeout_s`; a worker that stops reporting is killed
(its whole group) and restarted. Every exit, whatever its cause, is followed by the same cleanup
(`zoo_node.control.reaper.kill_footprint`): the group and the children it reported are killed and waited for,
its unix sockets removed, its temp dir wiped. What to clean is also written to `<home>/worker/footprint.json`
before and while the worker runs, so a supervisor that was itself killed cleans up after its old worker on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zoo_node.control.backoff import Backoff
from zoo_node.control.reaper import ProcessRef, WorkerFootprint, kill_footprint, killpg
from zoo_node.control.waiting import wait_event
from zoo_node.proto import worker_pb2

logger = logging.getLogger(__name__)

DRAINED = "drained: finished its work and exited"
FOOTPRINT_FILE = "footprint.json"
# Room left in a 107-byte unix socket path for the longest socket name put in the worker's TMPDIR
# (torch's "torch-shm-file-..." / hivemind's "hivemind-p2pd-<uuid>.sock").
_MAX_TMPDIR_LEN = 50


@dataclass
class WorkerSpec:
    """How to start the worker and how patient to be with it."""

    home: Path
    socket_path: Path
    run_id: int = 0
    shard: str = ""  # a hint; empty lets the worker choose
    spec_hash: bytes = b""
    device: str = "auto"
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    report_timeout_s: float = 60.0
    # Before its first call the worker is still starting Python and importing its libraries (slow on a busy box).
    register_timeout_s: float = 120.0
    stop_timeout_s: float = 20.0
    extra_args: Sequence[str] = ()
    log_level: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.home / "worker"

    @property
    def temp_dir(self) -> Path:
        """The worker's TMPDIR, which the supervisor wipes after every exit. p2pd and torch's shared-memory manager
        put unix sockets there, and a socket path has at most 107 bytes: a home deep in the file system (a test's
        tmp_path) gets a short folder in the system temp dir instead, named after the home."""
        inside = self.state_dir / "tmp"
        if len(str(inside)) <= _MAX_TMPDIR_LEN:
            return inside
        digest = hashlib.sha256(str(self.home.absolute()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"zoo-worker-{digest}"

    @property
    def report_interval_s(self) -> float:
        return max(0.2, min(5.0, self.report_timeout_s / 4))

    def argv(self, incarnation: int) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "zoo_node.worker",
            "--home",
            str(self.home),
            "--supervisor-socket",
            str(self.socket_path),
            "--incarnation",
            str(incarnation),
        ]
        if self.log_level:
            args += ["--log-level", self.log_level]
        return args + list(self.extra_args)


class StaleWorker(Exception):
    """A call from a worker that is not the current incarnation."""


@dataclass
class WorkerState:
    """What the supervisor knows of its worker (read by status and metrics)."""

    incarnation: int = 0
    pid: int = 0
    health: int = worker_pb2.HEALTH_STOPPED
    detail: str = ""
    shard: str = ""
    registered: bool = False
    started_at: float = 0.0  # monotonic
    last_report_at: float = 0.0  # monotonic; 0 before the first report
    progress: worker_pb2.Progress = field(default_factory=worker_pb2.Progress)
    resources: worker_pb2.WorkerResources = field(default_factory=worker_pb2.WorkerResources)
    metrics: dict[str, float] = field(default_factory=dict)
    restarts: int = 0
    last_exit_code: int | None = None
    next_start_at: float = 0.0  # monotonic; when waiting out the backoff
    # Progress of earlier incarnations, so that totals survive restarts.
    steps_before: int = 0
    tokens_before: int = 0
    flops_before: float = 0.0

    @property
    def total_steps(self) -> int:
        return self.steps_before + self.progress.steps

    @property
    def total_tokens(self) -> int:
        return self.tokens_before + self.progress.tokens

    @property
    def total_flops(self) -> float:
        return self.flops_before + self.progress.flops


class WorkerSupervisor:
    """Keeps one worker process running; all methods run on the asyncio loop."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        assignment_extras: Callable[[], list[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.state = WorkerState()
        self._assignment_extras = assignment_extras
        self._clock = clock
        self._backoff = Backoff(spec.backoff_initial_s, spec.backoff_max_s)
        self._proc: asyncio.subprocess.Process | None = None
        self._footprint = WorkerFootprint()
        self._commands: asyncio.Queue[worker_pb2.WorkerCommand] = asyncio.Queue()
        self._reported = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining = False
        self._exited = asyncio.Event()
        self._running = False
        self.on_change: Callable[[], None] | None = None  # health or worker change (for heartbeats, sd_notify)

    # --- paths and footprint -------------------------------------------------------------------------------

    @property
    def footprint_path(self) -> Path:
        return self.spec.state_dir / FOOTPRINT_FILE

    def _save_footprint(self) -> None:
        tmp = self.footprint_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._footprint.as_dict()))
        os.replace(tmp, self.footprint_path)

    def clean_stale(self) -> list[int]:
        """Clean what a previous supervisor's worker left (after kill -9 of the supervisor); returns killed pids."""
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        self.spec.temp_dir.mkdir(parents=True, exist_ok=True)
        killed: list[int] = []
        try:
            footprint = WorkerFootprint.from_dict(json.loads(self.footprint_path.read_text()))
        except FileNotFoundError:
            footprint = WorkerFootprint(temp_dir=str(self.spec.temp_dir))
        except (ValueError, KeyError, TypeError):
            logger.warning("%s is damaged; cleaning the temp dir only", self.footprint_path)
            footprint = WorkerFootprint(temp_dir=str(self.spec.temp_dir))
        # The old group id is only trusted while its leader (the old worker) is provably the same process.
        if footprint.worker is None or footprint.worker.process() is None:
            footprint.pgid = None
        killed = kill_footprint(footprint)
        if killed:
            logger.warning("killed %d processes left by a previous worker: %s", len(killed), killed)
        with contextlib.suppress(FileNotFoundError):
            self.footprint_path.unlink()
        return killed

    # --- the loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start the worker and keep it running until `stop()`."""
        self._running = True
        await asyncio.to_thread(self.clean_stale)
        while not self._stopping.is_set():
            started = self._clock()
            try:
                await self._start()
            except OSError as exc:
                logger.error("cannot start the worker: %s", exc)
                self.state.last_exit_code = None
            else:
                await self._watch()
                await self._cleanup()
            if self._stopping.is_set():
                break
            if self._draining and self.state.last_exit_code == 0:
                # It finished its work after a drain, as asked: a new incarnation would only be drained again.
                self.state.detail = DRAINED
                logger.info("the worker finished its work after the drain; not restarting it")
                self._changed()
                await self._stopping.wait()
                break
            delay = self._backoff.next_delay(self._clock() - started)
            self.state.restarts += 1
            self.state.next_start_at = self._clock() + delay
            logger.warning("worker exited (code %s); restarting in %.1f s", self.state.last_exit_code, delay)
            self._changed()
            await wait_event(self._stopping, delay)
            self.state.next_start_at = 0.0
        self._exited.set()

    async def _start(self) -> None:
        state = self.state
        state.incarnation += 1
        state.steps_before, state.tokens_before = state.total_steps, state.total_tokens
        state.flops_before = state.total_flops
        state.progress = worker_pb2.Progress()
        state.resources = worker_pb2.WorkerResources()
        state.registered = False
        state.last_report_at = 0.0
        state.health = worker_pb2.HEALTH_STARTING
        state.detail = ""
        state.shard = ""
        self._commands = asyncio.Queue()
        if self._draining:
            self._commands.put_nowait(worker_pb2.WorkerCommand(drain=worker_pb2.Drain(reason="node is draining")))
        self.spec.temp_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.spec.env)
        # hivemind and torch put their scratch files in the temp dir; this one is wiped after every exit.
        env.update({"TMPDIR": str(self.spec.temp_dir), "PYTHONUNBUFFERED": "1"})
        self._proc = await asyncio.create_subprocess_exec(
            *self.spec.argv(state.incarnation), env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        state.pid = self._proc.pid
        state.started_at = self._clock()
        self._footprint = WorkerFootprint(
            worker=ProcessRef.of(self._proc.pid), pgid=self._proc.pid, temp_dir=str(self.spec.temp_dir)
        )
        await asyncio.to_thread(self._save_footprint)
        logger.info("worker %d started (pid %d)", state.incarnation, state.pid)
        self._changed()

    async def _watch(self) -> None:
        """Wait for the worker to exit, killing it if it does not register or stops reporting."""
        assert self._proc is not None
        proc = self._proc
        wait_exit = asyncio.ensure_future(proc.wait())
        try:
            while not wait_exit.done():
                since = self.state.last_report_at or self.state.started_at
                limit = self.spec.report_timeout_s if self.state.registered else self.spec.register_timeout_s
                remaining = since + limit - self._clock()
                if remaining <= 0:
                    what = "report" if self.state.registered else "registration"
                    logger.error("worker %d sent no %s for %.0f s: killing it", self.state.incarnation, what, limit)
                    killpg(proc.pid, signal.SIGKILL)
                    await wait_exit
                    break
                self._reported.clear()
                reported = asyncio.ensure_future(self._reported.wait())
                await asyncio.wait({wait_exit, reported}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                reported.cancel()
        finally:
            if not wait_exit.done():
                killpg(proc.pid, signal.SIGKILL)
                await asyncio.shield(wait_exit)
        self.state.last_exit_code = proc.returncode
        logger.info("worker %d (pid %d) exited with %s", self.state.incarnation, proc.pid, proc.returncode)

    async def _cleanup(self) -> None:
        killed = await asyncio.to_thread(kill_footprint, self._footprint)
        if killed:
            logger.warning("killed %d leftover processes of worker %d: %s", len(killed), self.state.incarnation, killed)
        with contextlib.suppress(FileNotFoundError):
            self.footprint_path.unlink()
        self.state.health = worker_pb2.HEALTH_STOPPED
        self.state.pid = 0
        self._proc = None
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # --- calls from the WorkerService ----------------------------------------------------------------------

    def _check(self, incarnation: int) -> None:
        if incarnation != self.state.incarnation or self._proc is None:
            raise StaleWorker(f"worker incarnation {incarnation} is not the current one ({self.state.incarnation})")

    def register(self, request: worker_pb2.RegisterRequest) -> worker_pb2.RegisterReply:
        self._check(request.incarnation)
        if request.pid != self.state.pid:
            raise StaleWorker(f"pid {request.pid} is not the worker this supervisor started ({self.state.pid})")
        self.state.registered = True
        self.state.last_report_at = self._clock()
        self._reported.set()
        assignment = worker_pb2.Assignment(
            run_id=self.spec.run_id,
            shard=self.spec.shard,
            incarnation=self.state.incarnation,
            device=self.spec.device,
            temp_dir=str(self.spec.temp_dir),
            data_bootstrap=self._assignment_extras() if self._assignment_extras else [],
            spec_hash=self.spec.spec_hash,
        )
        return worker_pb2.RegisterReply(assignment=assignment, report_interval_s=self.spec.report_interval_s)

    def report(self, report: worker_pb2.WorkerReport) -> None:
        self._check(report.incarnation)
        state = self.state
        changed = report.health != state.health
        state.health = report.health
        state.detail = report.detail
        changed = changed or report.shard != state.shard
        state.shard = report.shard
        state.progress.CopyFrom(report.progress)
        state.metrics = dict(report.metrics)
        state.last_report_at = self._clock()
        if report.HasField("resources"):
            state.resources.CopyFrom(report.resources)
            self._footprint.children = [r for r in map(ProcessRef.of, report.resources.child_pids) if r is not None]
            self._footprint.sockets = list(report.resources.socket_paths)
            self._save_footprint()
            changed = True
        self._reported.set()
        if changed:
            self._changed()

    async def commands(self, incarnation: int):
        """The command stream of one incarnation (ends when it is no longer current or the supervisor stops)."""
        self._check(incarnation)
        queue = self._commands
        while incarnation == self.state.incarnation:
            command = await queue.get()
            yield command
            if command.WhichOneof("kind") == "stop":
                return

    # --- control -------------------------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self, reason: str) -> None:
        """Ask the worker (and every later incarnation) to take no new work."""
        self._draining = True
        self._commands.put_nowait(worker_pb2.WorkerCommand(drain=worker_pb2.Drain(reason=reason)))

    async def stop(self, reason: str) -> None:
        """Stop the worker for good: ask it to exit, kill its group after `stop_timeout_s`, clean up."""
        self._stopping.set()
        if not self._running:
            return
        self._commands.put_nowait(
            worker_pb2.WorkerCommand(stop=worker_pb2.Stop(reason=reason, timeout_s=self.spec.stop_timeout_s))
        )
        proc = self._proc
        if proc is not None and proc.returncode is None:
            # A worker that has not registered yet cannot hear the command: SIGTERM reaches it either way.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if not await wait_event(self._exited, self.spec.stop_timeout_s):
            logger.warning("worker did not stop within %.0f s: killing it", self.spec.stop_timeout_s)
            if self._proc is not None:
                killpg(self._proc.pid, signal.SIGKILL)
            await self._exited.wait()

    def reconfigure(self, spec: WorkerSpec) -> None:
        """Apply new timings (SIGHUP); paths and the assignment stay as they are until a restart."""
        for name in ("backoff_initial_s", "backoff_max_s", "report_timeout_s", "stop_timeout_s", "log_level"):
            setattr(self.spec, name, getattr(spec, name))
        attempt = self._backoff.attempt
        self._backoff = Backoff(spec.backoff_initial_s, spec.backoff_max_s, attempt=attempt)

    def report_age(self) -> float | None:
        if not self.state.last_report_at:
            return None
        return self._clock() - self.state.last_report_at

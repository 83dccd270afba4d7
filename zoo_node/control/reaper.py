"""Cleaning up after a worker: its process group, orphaned children (p2pd), their unix sockets, its temp dir.

Why all of these: hivemind starts p2pd as a child of the worker; a worker killed with SIGKILL leaves p2pd orphaned
and its `/tmp/hivemind-p2pd-*.sock` / `p2pclient-*.sock` files behind. The worker runs in its own session (so its
process group holds p2pd too, unless a child moves itself out), reports the pids and sockets it holds, and the
supervisor becomes a child subreaper (orphans re-parent to it, not to init, so it can see and reap them).
Processes are matched by pid and start time, so a recycled pid is never killed.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)
PR_SET_CHILD_SUBREAPER = 36


def enable_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux >= 3.4); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class ProcessRef:
    """A pid pinned to its start time (psutil's create_time), so that a recycled pid is not mistaken for it."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def process(self) -> psutil.Process | None:
        """The live (or zombie) process, if it is still the same one."""
        try:
            proc = psutil.Process(self.pid)
            return proc if abs(proc.create_time() - self.started) < 0.01 else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def as_dict(self) -> dict[str, float]:
        return {"pid": self.pid, "started": self.started}


@dataclass
class WorkerFootprint:
    """Everything to clean after one worker: its pid/pgid, reported children and sockets, its temp dir."""

    worker: ProcessRef | None = None
    pgid: int | None = None
    children: list[ProcessRef] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    temp_dir: str | None = None

    def as_dict(self) -> dict:
        return {
            "worker": self.worker.as_dict() if self.worker else None,
            "pgid": self.pgid,
            "children": [c.as_dict() for c in self.children],
            "sockets": list(self.sockets),
            "temp_dir": self.temp_dir,
        }

    @classmethod
    def from_dict(cls, data: dict) -> WorkerFootprint:
        worker = data.get("worker")
        return cls(
            worker=ProcessRef(int(worker["pid"]), float(worker["started"])) if worker else None,
            pgid=data.get("pgid"),
            children=[ProcessRef(int(c["pid"]), float(c["started"])) for c in data.get("children", [])],
            sockets=[str(s) for s in data.get("sockets", [])],
            temp_dir=data.get("temp_dir"),
        )


def killpg(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("not allowed to signal process group %d", pgid)
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Processes (zombies included) whose process group is `pgid`."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _reaped(pid: int) -> bool:
    """Collect a zombie if it is our child (orphans are, when we are the subreaper); True unless it is ours and
    not collectable yet (a process caught between its exit and its zombie state)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child: its parent (or init) collects it
    return reaped == pid


def _is_gone(proc: psutil.Process) -> bool:
    """True once the process has exited (and, if it was ours, been reaped): a zombie holds nothing but its pid."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    return _reaped(proc.pid)


def kill_footprint(footprint: WorkerFootprint, *, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL the worker's group and reported children, wait until they are gone (reaping our own zombies),
    remove the sockets and the temp dir. Returns the pids that were still alive and had to be killed.
    """
    victims: dict[int, psutil.Process] = {}
    if footprint.pgid is not None:
        for proc in group_members(footprint.pgid):
            victims[proc.pid] = proc
    for ref in [footprint.worker, *footprint.children]:
        proc = ref.process() if ref is not None else None
        if proc is not None:
            victims[proc.pid] = proc
    killed = []
    for pid, proc in victims.items():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
                killed.append(pid)
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + timeout_s
    pending = list(victims.values())
    while pending and time.monotonic() < deadline:
        pending = [proc for proc in pending if not _is_gone(proc)]
        if pending:
            time.sleep(0.02)
    for proc in pending:
        logger.warning("process %d of the worker did not go away", proc.pid)
    remove_paths(footprint.sockets)
    if footprint.temp_dir:
        wipe_dir(Path(footprint.temp_dir))
    return sorted(killed)


def remove_paths(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                logger.warning("cannot remove %s: %s", path, exc.strerror)


def wipe_dir(path: Path) -> None:
    """Empty a directory (keeping it)."""
    if not path.is_dir():
        return
    for entry in path.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        except FileNotFoundError:
            pass

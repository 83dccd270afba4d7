"""Child processes of the testnet: started in their own sessions, logged to files, always reaped.

Each child runs in a new session (its own process group) so that stopping it also stops what it started (a node's
worker and that worker's p2pd), and asks the kernel to SIGTERM it if the testnet process dies (PR_SET_PDEATHSIG), so
that not even a kill -9 of the testnet leaves a node running. `ProcessGroup.stop_all` sends SIGTERM to each group,
waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is `pgid` (a stopped node's worker and p2pd would show here)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


@dataclass
class ManagedProcess:
    """One child: its name, command, log file and Popen handle."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        log.debug("started %s (pid %d): %s", self.name, self.popen.pid, " ".join(self.argv))

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the process group, wait up to `timeout`, then SIGKILL the group; returns the exit code."""
        if self.popen is None:
            return None
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
        self.signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        code = self.popen.wait()
        deadline = time.monotonic() + 5
        while group_members(self.popen.pid) and time.monotonic() < deadline:
            self.signal_group(signal.SIGKILL)
            time.sleep(0.05)
        return code

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessGroup:
    """The testnet's children, stopped in reverse start order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, ManagedProcess] = {}

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> ManagedProcess:
        if name in self.processes and self.processes[name].running():
            raise RuntimeError(f"{name} is already running")
        proc = ManagedProcess(name, list(argv), self.log_dir / f"{name}.log", env=dict(env or {}))
        proc.start()
        self.processes[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        return self.processes[name].stop(timeout)

    def kill(self, name: str) -> None:
        """SIGKILL the whole group of `name` (chaos: a machine that vanished)."""
        proc = self.processes[name]
        proc.signal_group(signal.SIGKILL)
        if proc.popen is not None:
            proc.popen.wait()

    def stop_all(self, timeout: float = 20.0) -> None:
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.popen is not None:
                proc.stop(timeout)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if p.popen is not None}

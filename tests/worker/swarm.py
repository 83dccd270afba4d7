"""Real worker processes for the data-plane tests: `zoo-node worker` subprocesses on loopback, each in its own
process group (its DHT, averager and p2pd children die with it), reaped at teardown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.polling import wait_until
from zoo_node.runspec import RunSpec, dump_runspec


@dataclass
class WorkerProcess:
    name: str
    home: Path
    proc: subprocess.Popen
    out: Path
    log: Path
    started: dict = field(default_factory=dict)

    def wait_started(self, timeout: float = 300.0) -> dict:
        def started() -> dict | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            for line in self.out.read_text().splitlines():
                if line.startswith("{") and json.loads(line).get("event") == "started":
                    return json.loads(line)
            return None

        self.started = wait_until(started, timeout, f"worker {self.name} to start")
        return self.started

    @property
    def peer(self) -> str:
        return self.started["peer"]

    @property
    def maddr(self) -> str:
        return self.started["maddrs"][0]

    def status(self, run: str) -> dict:
        path = self.home / "runs" / run / f"worker-{self.peer}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def driver_log(self, run: str) -> list[dict]:
        path = self.home / "runs" / run / f"driver-{self.peer}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL: the worker and all its children at once (a machine going away). Else: signal the worker alone
        (SIGTERM: it drains, then stops its children itself)."""
        if sig != signal.SIGKILL:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(30)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""


class Swarm:
    """Starts workers of one run; `close()` reaps every process it started."""

    def __init__(self, tmp: Path, make_home: Callable[..., tuple[Path, Any]], spec: RunSpec) -> None:
        self.tmp, self.make_home, self.spec = tmp, make_home, spec
        self.spec_path = tmp / f"{spec.name}.toml"
        self.spec_path.write_text(dump_runspec(spec))
        self.workers: list[WorkerProcess] = []

    def start(
        self, name: str, shards: list[str] | None, peers: list[str] = (), home: Path | None = None, **flags: Any
    ) -> WorkerProcess:
        """A worker on a new home (or on `home`, e.g. to restart one), logging to `<name>.log`."""
        if home is None:
            home, _ = self.make_home(name)
        out, log = self.tmp / f"{name}.out", self.tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "zoo_node.cli", "--log-level", "info", "worker", "--json"]
        cmd += ["--run-spec", str(self.spec_path), "--home", str(home)]
        if shards is not None:
            cmd += ["--shards", ",".join(shards)]
        for peer in peers:
            cmd += ["--peer", peer]
        for key, value in flags.items():
            flag = key.replace("_", "-")
            if isinstance(value, bool):
                cmd += [f"--{flag}" if value else f"--no-{flag}"]
            else:
                cmd += [f"--{flag}", str(value)]
        with out.open("w") as stdout, log.open("w") as stderr:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, start_new_session=True, cwd=self.tmp)
        worker = WorkerProcess(name, home, proc, out, log)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.kill(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            # Whatever is left of its process group (the worker, or children a SIGKILL orphaned) goes now.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.proc.pid, signal.SIGKILL)
            if worker.proc.poll() is None:
                worker.proc.wait(10)

"""Real `zoo-node join` processes for the acceptance tests, and a devchain run for them to join."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.fixtures.chain import configure_chain
from tests.fixtures.homes import TEST_PASSWORD
from zoo_node.chain.devchain import DevChain
from zoo_node.control.status_client import NodeClient, NodeUnreachable, proto_to_dict

REPO = Path(__file__).resolve().parents[2]
_SCRUB = ("ZOO_NODE_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(extra or {})
    return env


def create_run(chain: DevChain) -> int:
    """A funded, active run created by dev account 1."""
    owner = chain.client(chain.accounts[1])
    run_id, _ = owner.runs.create_run(
        spec_hash=b"\x42" * 32,
        coordinator=chain.accounts[1].address,
        epoch_length_s=3600,
        reward_per_epoch=10**18,
        funding=10 * 10**18,
    )
    return run_id


def chain_home(make_home, name: str, chain: DevChain) -> Path:
    home, _ = make_home(name)
    configure_chain(home, chain)
    (home / "password").write_text(TEST_PASSWORD + "\n")
    return home


class JoinProcess:
    """One `zoo-node join` subprocess; its stderr goes to <home>/join.log."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.worker_pids: set[int] = set()

    def start(self) -> JoinProcess:
        log = open(self.home / "join.log", "a")  # noqa: SIM115 (closed by the child's exit)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zoo_node", "join", "--home", str(self.home), *self.args],
            cwd=REPO,
            env=clean_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return (self.home / "join.log").read_text()

    def status(self) -> dict | None:
        """The node's status, or None while it does not answer."""
        try:
            with NodeClient.for_home(self.home, timeout_s=3) as client:
                status = proto_to_dict(client.status())
        except NodeUnreachable:
            return None
        if status["worker"]["pid"]:
            self.worker_pids.add(status["worker"]["pid"])
        return status

    def wait(self, condition, timeout_s: float, what: str) -> dict:
        """Poll status until `condition(status)`; fails naming `what` (and the log's tail) at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"join exited with {self.proc.returncode} waiting for {what}:\n{self.log()[-3000:]}"
                )
            status = self.status()
            if status is not None and condition(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def wait_running(self, timeout_s: float = 120) -> dict:
        return self.wait(lambda s: s["node"]["state"] == "running", timeout_s, f"{self.home.name} running")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def reap(self) -> None:
        """Test teardown: stop the process and anything its workers left (it must have cleaned up itself)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.worker_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def joins() -> Iterator[list[JoinProcess]]:
    started: list[JoinProcess] = []
    yield started
    for join in started:
        join.reap()


def gone(pid: int) -> bool:
    """True once no live process has this pid (a zombie still counts as there)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_DEAD
    except psutil.NoSuchProcess:
        return True

"""Test harness of the coordinator: its daemon and gossip peers as real processes, homes on a real dev chain.

- `CoordinatorProcess`: `zoo-node coordinator run` in its own session; `start()` waits until its gRPC health says
  SERVING; `kill9()` is a real SIGKILL of its process group.
- `PeerProcess`: a `tests.coordinator.simpeer` process (a real py-libp2p control-plane peer with a node home's keys).
- `SimNode`: a node home registered on chain and joined to the run, with its control and data-plane keys, able to
  co-sign rounds.

Every process is started in a new session and killed with its group at the end (`close()`), also on failure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fixtures.chain import configure_chain
from tests.fixtures.homes import TEST_PASSWORD
from tests.fixtures.polling import wait_until
from zoo_node.config import CONFIG_FILE, read_config_file, write_config
from zoo_node.coordinator.client import ADDRESS_FILE, CoordinatorClient
from zoo_node.coordinator.runfile import load_run_file
from zoo_node.coordinator.store import STORE_FILE, CoordinatorStore
from zoo_node.identity import load_data_seed, load_operator_account
from zoo_node.receipts import Receipt, RoundBody, cosign
from zoo_node.runspec import RunSpec, dump_runspec

REPO = Path(__file__).resolve().parents[2]
# Fast clocks for loopback: heartbeats every 0.5 s, gone after 3 s of silence.
COORDINATOR_CONFIG = {
    "coordinator": {"listen": "127.0.0.1:0", "sample_interval_s": 0.3, "settle_poll_s": 0.5},
    "swarm": {"heartbeat_interval_s": 0.5, "peer_timeout_s": 3.0, "registry_refresh_s": 2.0},
}
EPOCH_S = 3600


def write_run_file(path: Path, spec: RunSpec, **settlement: Any) -> Path:
    terms = {"epoch_length_s": EPOCH_S, "reward_per_epoch": "3", "funding": "30", "min_nodes": 2, **settlement}
    lines = [f"{k} = {json.dumps(v)}" for k, v in terms.items()]
    path.write_text(dump_runspec(spec) + "\n[settlement]\n" + "\n".join(lines) + "\n")
    return path


def configure_coordinator(home: Path, chain, extra: dict[str, Any] | None = None) -> Path:
    """Point a home at the dev chain (funded) and give it the test's coordinator settings."""
    configure_chain(home, chain, fund_wei=1000 * 10**18)
    path = home / CONFIG_FILE
    layer = read_config_file(path)
    for section, values in {**COORDINATOR_CONFIG, **(extra or {})}.items():
        layer[section] = {**layer.get(section, {}), **values}
    write_config(path, layer)
    return home


def seed_flops_table(home: Path, run_file: Path, table: dict[str, int]) -> None:
    """Put the spec's FLOPs table in the coordinator's store cache, as a first start would (it is computed by
    zoo_node.model in a child interpreter, which costs seconds: tests compute it once per session)."""
    spec = load_run_file(run_file).spec
    store = CoordinatorStore(home / STORE_FILE)
    store.set_meta(f"flops_table:{spec.content_hash}", json.dumps(table, sort_keys=True))
    store.close()


class _Lines:
    """A child's stdout read line by line in a thread (so that waits have deadlines)."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.queue.put(line)

    def next_json(self, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            with contextlib.suppress(ValueError):
                return json.loads(line)


def _kill_group(popen: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


class CoordinatorProcess:
    """`zoo-node coordinator run` as a child process."""

    def __init__(self, home: Path, run_file: Path, password_file: Path, log_path: Path) -> None:
        self.home = home
        self.run_file = run_file
        self.password_file = password_file
        self.log_path = log_path
        self.popen: subprocess.Popen | None = None
        self.address = ""

    def start(self, timeout_s: float = 60.0) -> CoordinatorProcess:
        with contextlib.suppress(FileNotFoundError):
            (self.home / ADDRESS_FILE).unlink()  # left behind by a kill -9
        argv = [
            sys.executable, "-m", "zoo_node", "coordinator", "run", "--spec", str(self.run_file),
            "--home", str(self.home), "--password-file", str(self.password_file),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.address = wait_until(self._address, timeout_s, f"the coordinator's address (log {self.log_path})")
        wait_until(self._serving, timeout_s, "the coordinator's health to say SERVING")
        return self

    def _address(self) -> str:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"the coordinator exited with {self.popen.returncode}:\n{self.tail()}")
        try:
            return (self.home / ADDRESS_FILE).read_text().strip()
        except FileNotFoundError:
            return ""

    def _serving(self) -> bool:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(self.address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="zoo.node.v1.CoordinatorService"), timeout=2
                )
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def client(self, *, admin: bool = False) -> CoordinatorClient:
        token = (self.home / "coordinator.token").read_text().strip() if admin else None
        return CoordinatorClient(self.address, admin_token=token)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill9(self) -> None:
        assert self.popen is not None
        _kill_group(self.popen, signal.SIGKILL)
        self.popen.wait(30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            _kill_group(self.popen, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout_s)
        _kill_group(self.popen, signal.SIGKILL)
        return self.popen.wait()


class PeerProcess:
    """A `tests.coordinator.simpeer` process."""

    def __init__(self, home: Path, run_id: int, dial: Iterable[str], log_path: Path, interval_s: float = 0.5) -> None:
        argv = [sys.executable, "-m", "tests.coordinator.simpeer", "--home", str(home), "--run-id", str(run_id),
                "--interval", str(interval_s)]  # fmt: skip
        for addr in dial:
            argv += ["--dial", addr]
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in kill())
        self.popen = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            start_new_session=True,
        )  # fmt: skip
        self._lines = _Lines(self.popen.stdout)
        self.peer_id = ""

    def wait_ready(self, timeout_s: float = 60.0) -> PeerProcess:
        event = self._lines.next_json(timeout_s, "the peer to start")
        assert event.get("event") == "ready", event
        self.peer_id = event["peer_id"]
        return self

    def send(self, **command: Any) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(command) + "\n")
        self.popen.stdin.flush()

    def set(self, **figures: Any) -> None:
        self.send(cmd="set", **figures)

    def announce(self, receipt: Receipt, timeout_s: float = 30.0) -> None:
        self.send(cmd="receipt", blob=base64.b64encode(receipt.to_bytes()).decode())
        event = self._lines.next_json(timeout_s, "the peer to announce a receipt")
        assert event.get("event") == "announced", event

    def kill(self) -> None:
        _kill_group(self.popen, signal.SIGKILL)
        self.popen.wait(30)
        self._log.close()


class SimNode:
    """A node home registered on chain (CPU hardware) and joined to a run, with its keys."""

    def __init__(self, home: Path, identity, chain, run_id: int) -> None:
        from zoo_node.chain.node_registry import Hardware
        from zoo_node.chain.operator import register_node

        self.home = home
        self.peer_id = identity.control_peer_id
        self.worker = identity.data_peer_id
        self.owner = identity.operator_address
        self.data_key = Ed25519PrivateKey.from_private_bytes(load_data_seed(home))
        configure_chain(home, chain)
        client = chain.client(load_operator_account(home, TEST_PASSWORD))
        registration = register_node(client, operator=self.owner, peer_id=self.peer_id, hardware=Hardware("cpu", 0, 0))
        client.nodes.join_run(registration.node_id, run_id)


def cosigned(run_id: int, shard: str, rnd: int, samples: dict[SimNode, int], seconds: float = 10.0):
    """Each member's own copy of a round, co-signed by every member with its real data-plane key."""
    body = RoundBody.of(run_id, shard, rnd, {n.worker: s for n, s in samples.items()})
    signatures = {n.worker: cosign(body, n.data_key) for n in samples}
    return {n: Receipt(body, signatures, tokens=s * 64, seconds=seconds, device="cpu x1") for n, s in samples.items()}

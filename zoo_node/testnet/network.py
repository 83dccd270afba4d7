"""`zoo-node testnet up`: the whole network on this machine, from an empty folder to rewards claimed.

The steps, each logged and shown as progress:
1. anvil with the contracts deployed (`zoo_node.chain.devchain`), N+1 dev accounts;
2. a coordinator home and N node homes (keys, config on loopback, funded operator addresses);
3. the run file (the testnet run spec plus `[settlement]`), then `zoo-node coordinator run`, which creates the run;
4. N `zoo-node join --register` processes (each a supervisor and its worker), which register, join and train;
5. wait until the drivers have done `steps` steps and the coordinator has a receipt from every node (with
   `--chaos`, kill -9 and restart random nodes meanwhile). The run has no step limit: the node that joins last may
   have its shards' first round only after the others' drivers reached `steps` (the demo's tiny model does a step in
   about a second), and a stopped run makes no more rounds; training goes on until the testnet stops it;
6. move the chain's clock past the epoch's end, wait for the coordinator to settle `epochs` epochs;
7. `zoo-node rewards claim` for every node;
8. drain the nodes and compare every node's journaled receipts with the coordinator's (lost: never arrived); the
   summary.

Everything runs as real processes in their own sessions; `ProcessGroup.stop_all` (on a normal exit, an error,
Ctrl-C or SIGTERM from `testnet down`) stops them and their children, and anvil dies with this process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo_node.config import CONFIG_FILE, NETWORK_PRESETS, write_config
from zoo_node.errors import ZooError
from zoo_node.testnet.processes import ProcessGroup, pid_alive

log = logging.getLogger(__name__)

STATE_FILE = "testnet.json"
PASSWORD = "zoo-node-testnet"
# A testnet's keys protect nothing: a low scrypt cost keeps N homes quick to create and open (same file format).
TESTNET_SCRYPT_N = 1 << 12
EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "docs" / "examples" / "testnet-run.toml"


class TestnetError(ZooError):
    """The testnet could not be brought up, or a step did not finish in time."""


@dataclass
class TestnetOptions:
    nodes: int = 4
    preset: str = "zen-3-tiny-moe"
    steps: int = 60
    epochs: int = 1
    chaos: bool = False
    workdir: Path = field(default_factory=lambda: Path(os.environ.get("ZOO_NODE_TESTNET_DIR", "~/.zoo-node-testnet")))
    timeout_s: float = 900.0
    seed: int = 0


@dataclass
class Summary:
    nodes: int
    steps: int
    loss_first: float | None
    loss_last: float | None
    tokens: int
    mfu: float | None
    device_hours: float
    device_kind: str
    epochs_settled: int
    claims_paid: int
    receipts_accepted: int
    receipts_rejected: int
    rewards: dict[str, str]
    rewards_paid_wei: str
    epochs_reward_wei: str
    chaos_kills: int
    receipts_journaled: int
    receipts_lost: int
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wait(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestnetError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


class Testnet:
    """One testnet: its folder, chain, homes and processes."""

    def __init__(self, options: TestnetOptions, progress: Callable[[str], None] = lambda _msg: None) -> None:
        self.options = options
        self.workdir = options.workdir.expanduser().absolute()
        self.progress = progress
        self.processes = ProcessGroup(self.workdir / "logs")
        self.chain = None
        self.coordinator_home = self.workdir / "coordinator"
        self.node_homes = [self.workdir / f"node-{i}" for i in range(options.nodes)]
        self.password_file = self.workdir / "password"
        self.run_file = self.workdir / "run.toml"  # the coordinator's: the spec plus [settlement]
        self.spec_file = self.workdir / "spec.toml"  # the nodes': the spec alone (same content hash)
        self.run_id: int | None = None
        self.coordinator_address = ""
        self.chaos_kills = 0
        self.started = time.monotonic()

    # -- state file, for `testnet status` and `testnet down`
    def write_state(self, status: str, **extra: Any) -> None:
        state = {
            "status": status,
            "pid": os.getpid(),
            "workdir": str(self.workdir),
            "rpc_url": getattr(self.chain, "rpc_url", None),
            "run_id": self.run_id,
            "coordinator": self.coordinator_address,
            "processes": self.processes.pids(),
            "nodes": [str(h) for h in self.node_homes],
            "updated": time.time(),
            **extra,
        }
        tmp = self.workdir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.workdir / STATE_FILE)

    # -- steps
    def prepare(self) -> None:
        from zoo_node.chain.devchain import start_devchain

        if (self.workdir / STATE_FILE).exists():
            state = json.loads((self.workdir / STATE_FILE).read_text())
            pid = state.get("pid")
            if state.get("status") in ("starting", "running") and pid and pid_alive(pid):
                raise TestnetError(f"a testnet is running in {self.workdir} (pid {pid}): `zoo-node testnet down` first")
        if self.workdir.exists():
            import shutil

            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, mode=0o700)
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.write_state("starting")
        self.progress("starting anvil and deploying the contracts")
        self.chain = start_devchain(
            accounts=self.options.nodes + 2, deployment_file=self.workdir / "chain" / "deployment.json"
        )
        self.write_state("starting")

    def make_homes(self) -> None:
        from zoo_node.identity import create_keys, ensure_home, operator_address

        assert self.chain is not None
        self.progress(f"creating {self.options.nodes} node homes and a coordinator home")
        for home in [self.coordinator_home, *self.node_homes]:
            ensure_home(home)
            create_keys(home, PASSWORD, scrypt_n=TESTNET_SCRYPT_N)
            layer = json.loads(json.dumps(NETWORK_PRESETS["devnet"]))
            layer["chain"] = {
                "rpc_url": self.chain.rpc_url,
                "deployment_file": str(self.chain.deployment_file),
                "max_retries": 3,
            }
            layer["swarm"] = {**layer["swarm"], "heartbeat_interval_s": 1.0, "peer_timeout_s": 8.0}
            layer["worker"] = {**layer["worker"], "num_shards": self.shards_per_node()}
            if home == self.coordinator_home:
                layer["coordinator"] = {"listen": "127.0.0.1:0"}  # a free port, read back from its address file
            write_config(home / CONFIG_FILE, layer)
            self.chain.fund(operator_address(home), 1000 * 10**18)

    def shards_per_node(self) -> int:
        """Enough shards per worker that every shard of the testnet's run has two replicas (averaging needs two)."""
        from zoo_node.runspec import load_runspec

        spec = load_runspec(EXAMPLE_SPEC)
        shards = len(spec.shard_names(moe="moe" in self.options.preset))
        return min(shards, -(-2 * shards // self.options.nodes))

    def write_run_file(self) -> None:
        from zoo_node.runspec import dump_runspec, load_runspec

        spec = load_runspec(EXAMPLE_SPEC)
        spec = spec.model_copy(update={"model": self.options.preset, "max_steps": None})  # see step 5 above
        reward = 10
        terms = {
            "epoch_length_s": 3600,
            "reward_per_epoch": str(reward),
            "funding": str(reward * max(self.options.epochs, 1) * 2),
            "min_nodes": 2,
        }
        lines = [f"{k} = {json.dumps(v)}" for k, v in terms.items()]
        self.spec_file.write_text(dump_runspec(spec))
        self.run_file.write_text(dump_runspec(spec) + "\n[settlement]\n" + "\n".join(lines) + "\n")

    def start_coordinator(self) -> None:
        from zoo_node.coordinator.client import ADDRESS_FILE, CoordinatorClient

        self.progress("starting the coordinator, which creates the run on chain")
        argv = [sys.executable, "-m", "zoo_node", "coordinator", "run", "--spec", str(self.run_file),
                "--home", str(self.coordinator_home), "--password-file", str(self.password_file)]  # fmt: skip
        proc = self.processes.start("coordinator", argv)

        def address() -> str:
            if not proc.running():
                raise TestnetError(f"the coordinator exited:\n{proc.tail()}")
            with contextlib.suppress(FileNotFoundError):
                return (self.coordinator_home / ADDRESS_FILE).read_text().strip()
            return ""

        self.coordinator_address = _wait(address, 120, "the coordinator's API address")

        def run_id() -> int | None:
            try:
                with CoordinatorClient(self.coordinator_address, timeout_s=3) as client:
                    return client.get_run().run_id or None
            except Exception:  # not serving yet
                return None

        self.run_id = _wait(run_id, 120, "the run on chain")
        self.write_state("starting")

    def join_argv(self, home: Path) -> list[str]:
        assert self.run_id is not None
        return [sys.executable, "-m", "zoo_node", "join", "--home", str(home), "--run", str(self.run_id),
                "--register", "--stake", "1", "--password-file", str(self.password_file),
                "--run-spec", str(self.spec_file)]  # fmt: skip

    def start_nodes(self) -> None:
        """Start the nodes one after another: each joins when the previous one's worker serves its shards, so that
        it bootstraps into their DHT and chooses its shards knowing what the others cover."""
        for i, home in enumerate(self.node_homes):
            self.progress(f"starting node-{i} of {self.options.nodes} (zoo-node join: supervisor + worker)")
            proc = self.processes.start(f"node-{i}", self.join_argv(home))
            self.write_state("starting")

            def serving(home: Path = home, proc=proc, name: str = f"node-{i}") -> bool:
                if not proc.running():
                    raise TestnetError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}")
                status = self.node_status(home)
                return bool(status) and status["worker"]["health"] == "serving"

            _wait(serving, 300, f"node-{i}'s worker to serve its shards")
        self.write_state("running")

    @functools.cached_property
    def node_peers(self) -> dict[str, Path]:
        """Each node's control-plane PeerID (the coordinator's name for it) and home; read once, after the homes."""
        from zoo_node.identity import load_public_identity

        return {load_public_identity(home).control_peer_id: home for home in self.node_homes}

    def node_status(self, home: Path) -> dict | None:
        from zoo_node.control.status_client import NodeClient, NodeUnreachable, proto_to_dict

        try:
            with NodeClient.for_home(home, timeout_s=3) as client:
                return proto_to_dict(client.status())
        except (NodeUnreachable, OSError):
            return None

    def coordinator(self):
        from zoo_node.coordinator.client import CoordinatorClient

        return CoordinatorClient(self.coordinator_address, timeout_s=10)

    def driver_steps(self) -> int:
        """The most steps any node's driver has reported (drivers sit on stage 0)."""
        best = 0
        for home in self.node_homes:
            status = self.node_status(home)
            if status:
                best = max(best, int(status["worker"].get("progress", {}).get("steps", 0) or 0))
        return best

    def train(self) -> None:
        rng = random.Random(self.options.seed)
        target = self.options.steps
        self.progress(f"training: waiting for {target} steps and a receipt from every node")
        deadline = time.monotonic() + self.options.timeout_s
        next_chaos = time.monotonic() + 30
        dead: dict[str, float] = {}
        last_report: tuple[int, int] = (-1, -1)
        while True:
            steps = self.driver_steps()
            heard = self.nodes_heard()
            if (steps, heard) != last_report:
                self.progress(f"training: {steps}/{target} steps, receipts from {heard}/{self.options.nodes} nodes")
                last_report = (steps, heard)
            if steps >= target and heard == self.options.nodes and not dead:
                break
            for name, proc in self.processes.processes.items():
                if name not in dead and not proc.running():
                    raise TestnetError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            for name, when in list(dead.items()):
                if time.monotonic() >= when:  # bring a killed node back
                    index = int(name.split("-")[1])
                    self.processes.start(name, self.join_argv(self.node_homes[index]))
                    self.progress(f"chaos: restarted {name}")
                    del dead[name]
            if self.options.chaos and not dead and time.monotonic() >= next_chaos:
                # Never node-0: it drives the data in the testnet's placement, and the run must finish.
                victim = f"node-{rng.randrange(1, self.options.nodes)}"
                self.processes.kill(victim)
                self.chaos_kills += 1
                dead[victim] = time.monotonic() + 10
                next_chaos = time.monotonic() + 40
                self.progress(f"chaos: kill -9 {victim}")
            if time.monotonic() > deadline:
                raise TestnetError(
                    f"in {self.options.timeout_s:.0f} s: {steps}/{target} steps, receipts from {heard}/"
                    f"{self.options.nodes} nodes"
                )
            time.sleep(1.0)

    def nodes_heard(self) -> int:
        """How many nodes the coordinator has a receipt from."""
        try:
            with self.coordinator() as client:
                return len(self.node_peers.keys() & {n.peer_id for n in client.list_nodes().nodes if n.receipts > 0})
        except Exception:  # the coordinator is busy or restarting: ask again next time
            return 0

    def count_receipts(self, timeout_s: float = 90.0) -> tuple[int, int]:
        """(receipts the nodes journaled, how many of them the coordinator never heard of). The nodes are drained
        first (no new work), then their journals and the coordinator's counts are compared until every journaled
        receipt has arrived or `timeout_s` passes: what is still missing then is lost."""
        from zoo_node.control.status_client import NodeClient

        self.progress("counting receipts: draining the nodes, then comparing their journals with the coordinator")
        for home in self.node_homes:
            with contextlib.suppress(Exception), NodeClient.for_home(home, timeout_s=5) as client:
                client.drain("testnet: counting receipts")
        counted = (0, 0)

        def none_missing() -> bool:
            nonlocal counted
            journaled = {}
            for peer, home in self.node_peers.items():
                status = self.node_status(home)
                journaled[peer] = int(status["journal"]["receipts"]) if status else 0
            with self.coordinator() as client:
                heard = {n.peer_id: n.receipts for n in client.list_nodes().nodes}
            counted = (sum(journaled.values()), sum(max(0, n - heard.get(p, 0)) for p, n in journaled.items()))
            return counted[1] == 0

        with contextlib.suppress(TestnetError):  # still missing at the deadline: lost, and the summary says so
            _wait(none_missing, timeout_s, "every journaled receipt at the coordinator", every_s=1.0)
        return counted

    def settle(self) -> list[Any]:
        assert self.chain is not None
        self.progress(f"settling {self.options.epochs} epoch(s): moving the chain's clock past their end")
        with self.coordinator() as client:
            run = client.get_run()
            for _ in range(self.options.epochs):
                remaining = max(0, int(client.get_run().next_epoch_end_unix - time.time())) + 2
                self.chain.increase_time(remaining)
                self.chain.mine()
            target = run.last_settled_epoch + self.options.epochs
            _wait(lambda: client.get_run().last_settled_epoch >= target, 180, f"epoch {target} to be settled")
            return list(client.list_epochs().epochs)

    def claim(self) -> dict[str, str]:
        import subprocess

        self.progress("claiming every node's rewards (zoo-node rewards claim)")
        paid: dict[str, str] = {}
        for i, home in enumerate(self.node_homes):
            argv = [sys.executable, "-m", "zoo_node", "rewards", "claim", "--home", str(home),
                    "--password-file", str(self.password_file), "--json"]  # fmt: skip
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=180,
            )
            if result.returncode != 0:
                log.warning("node-%d: claim failed: %s", i, result.stderr.strip())
                continue
            data = json.loads(result.stdout)
            amount = sum(int(claim["paid_wei"]) for claim in data.get("claims", []))
            for problem in data.get("problems", []):
                log.warning("node-%d: run %s: %s", i, problem["run_id"], problem["problem"])
            if amount > 0:
                paid[f"node-{i}"] = str(amount)
        return paid

    def summary(self, steps: int, epochs: list[Any], paid: dict[str, str], receipts: tuple[int, int]) -> Summary:
        with self.coordinator() as client:
            run = client.get_run(max_points=10_000)
        losses = [p.value for p in run.loss_series]
        hours = run.gpu_hours or run.cpu_hours
        return Summary(
            nodes=self.options.nodes,
            steps=steps,
            loss_first=losses[0] if losses else None,
            loss_last=losses[-1] if losses else None,
            tokens=int(run.tokens),
            mfu=None if run.mfu != run.mfu else float(run.mfu),  # NaN: unknown
            device_hours=float(hours),
            device_kind="gpu" if run.gpu_hours else "cpu",
            epochs_settled=len([e for e in epochs if e.root]),
            claims_paid=len(paid),
            receipts_accepted=sum(e.accepted for e in epochs),
            receipts_rejected=sum(e.rejected for e in epochs),
            rewards=paid,
            rewards_paid_wei=str(sum(int(v) for v in paid.values())),
            epochs_reward_wei=str(sum(int(e.paid_wei or 0) for e in epochs)),
            chaos_kills=self.chaos_kills,
            receipts_journaled=receipts[0],
            receipts_lost=receipts[1],
            wall_s=round(time.monotonic() - self.started, 1),
        )

    def run(self) -> Summary:
        """Bring the network up, train, settle, claim; always tear down."""
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self.prepare()
            self.make_homes()
            self.write_run_file()
            self.start_coordinator()
            self.start_nodes()
            self.train()
            epochs = self.settle()
            paid = self.claim()
            steps = self.driver_steps()  # before the drain, which ends the drivers
            receipts = self.count_receipts()
            summary = self.summary(steps, epochs, paid, receipts)
            self.write_state("finished", summary=summary.as_dict())
            return summary
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.write_state("failed", error=str(exc) or type(exc).__name__)
            raise
        finally:
            self.progress("stopping every process")
            self.processes.stop_all()
            if self.chain is not None:
                self.chain.stop()
            signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def read_state(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir.expanduser() / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise TestnetError(f"{workdir / STATE_FILE}: corrupted state file: {exc}") from None


def down(workdir: Path, timeout_s: float = 60.0) -> dict:
    """Stop a detached testnet: SIGTERM its `testnet up` process (which stops the rest), then make sure."""
    from zoo_node.testnet.processes import group_members

    state = read_state(workdir)
    if state is None:
        raise TestnetError(f"no testnet in {workdir.expanduser()}")
    pid = state.get("pid")
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = []
    for name, child in (state.get("processes") or {}).items():
        for member in group_members(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
            left.append(f"{name}:{member}")
    state = read_state(workdir) or state
    return {"stopped": True, "status": state.get("status"), "killed_leftovers": left}

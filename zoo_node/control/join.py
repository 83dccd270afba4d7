"""`zoo-node join`: the start-up steps of a node, then the supervisor until SIGTERM or `Shutdown`.

Steps: config and keys; the chain (deployment, registration, the run); the node API (so `zoo-node status` answers
from here on); the receipts journal; the libp2p host; the transactions the node needs, if any (register, publish
its multiaddrs, join the run: only then is the operator keystore unlocked); the registered nodes; bootstrap; the
run's gossip and the worker. On a terminal each step shows a spinner; every step is logged with its duration.

Signals: SIGTERM and SIGINT drain and exit 0 within `worker.stop_timeout_s` + 15 s; SIGHUP reloads config.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zoo_node.config import load_config, resolve_home
from zoo_node.control.chain_link import ChainDirectory, JoinError, parse_stake
from zoo_node.control.messages import ControlKey
from zoo_node.control.reaper import enable_subreaper
from zoo_node.control.supervisor import NodeOptions, NodeSupervisor
from zoo_node.identity import load_control_seed, load_operator_account, load_public_identity, read_password

logger = logging.getLogger("zoo_node.control.join")


@dataclass
class JoinOptions:
    """`zoo-node join`'s flags."""

    home: Path | None = None
    run_id: int | None = None
    bootstrap: list[str] = field(default_factory=list)
    register: bool = False
    stake: str | None = None
    password_file: Path | None = None
    worker_mode: str = "full"
    run_spec: Path | None = None  # the run's spec file; its hash must be the one the RunRegistry records


def _checked_run_spec(path: Path | None, chain_hash: bytes, home: Path) -> Path | None:
    """The run spec to train, checked against the hash the RunRegistry records for the run (JoinError if not it)."""
    if path is None:
        return None
    from zoo_node.config import resolve_in_home
    from zoo_node.runspec import load_runspec

    path = resolve_in_home(home, Path(path))
    spec = load_runspec(path)
    if chain_hash and bytes.fromhex(spec.content_hash) != chain_hash:
        raise JoinError(
            f"{path}: its content hash {spec.content_hash} is not the run's spec hash on chain ({chain_hash.hex()})"
        )
    return path


class StartupSteps:
    """Shows and logs the start-up steps."""

    def __init__(self, interactive: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._console = None
        if self.interactive:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """A step; append notes to the yielded list to show them when it completes."""
        notes: list[str] = []
        started = time.monotonic()
        status = self._console.status(title + " ...") if self._console is not None else contextlib.nullcontext()
        try:
            with status:
                yield notes
        except BaseException as exc:
            logger.error("%s: failed after %.1f s: %s", title, time.monotonic() - started, exc)
            raise
        detail = f" ({'; '.join(notes)})" if notes else ""
        logger.info("%s: done in %.1f s%s", title, time.monotonic() - started, detail)


async def _needed_transactions(node: NodeSupervisor, directory: ChainDirectory, opts: JoinOptions, steps) -> None:
    """Register, publish multiaddrs and join the run on chain, unlocking the keystore only if a step needs it."""
    info = await asyncio.to_thread(directory.check_registration, node.peer_id, node.options.operator)
    addrs = node.public_multiaddrs
    joined = info is not None and await asyncio.to_thread(directory.client.nodes.joined_run, info.node_id, node.run_id)
    current: list[str] = []
    if info is not None:
        with contextlib.suppress(Exception):
            current = info.multiaddrs
    if info is not None and joined and sorted(current) == sorted(addrs):
        return
    with steps.step("Unlocking the operator key"):
        home = node.home
        password = read_password(opts.password_file)
        account = await asyncio.to_thread(load_operator_account, home, password)
    sender = directory.with_account(account, node.config.chain.receipt_timeout_s)
    if info is None:
        stake = parse_stake(opts.stake or "")
        with steps.step("Registering the node on chain") as notes:
            await asyncio.to_thread(sender.register, node.peer_id, node.options.operator, stake, addrs)
            notes.append(f"staked {opts.stake} coins")
        info = await asyncio.to_thread(directory.check_registration, node.peer_id, node.options.operator)
        assert info is not None
    else:
        with steps.step("Publishing the node's multiaddrs on chain") as notes:
            if await asyncio.to_thread(sender.publish_multiaddrs, info, addrs):
                notes.append(", ".join(addrs))
    with steps.step(f"Joining run {node.run_id} on chain") as notes:
        if not await asyncio.to_thread(sender.join_run, info, node.run_id):
            notes.append("already joined")


async def run_join(opts: JoinOptions) -> int:
    """Start a node and run it until it is told to stop; returns the exit code."""
    steps = StartupSteps()
    home = resolve_home(opts.home)
    flags = {"run_id": opts.run_id} if opts.run_id is not None else {}
    with steps.step("Loading config and keys") as notes:
        config = load_config(home, flags)
        key = ControlKey.from_seed(load_control_seed(home))
        identity = load_public_identity(home)
        notes.append(f"node {key.peer_id}, operator {identity.operator_address}")
    if opts.register:
        if config.owner_address and config.owner_address.lower() != identity.operator_address.lower():
            raise JoinError(
                f"owner_address {config.owner_address} is not the operator: register from the owner's wallet, "
                "then run `zoo-node join` without --register"
            )
        if opts.stake is None:
            raise JoinError("--register needs --stake <coins>: the stake to lock in the NodeRegistry")
        parse_stake(opts.stake)  # fail before touching anything
    with steps.step("Connecting to the chain") as notes:
        directory = await asyncio.to_thread(ChainDirectory.from_config, config, home)
        notes.append(config.chain.rpc_url)
    with steps.step("Checking the node's registration") as notes:
        info = await asyncio.to_thread(directory.check_registration, key.peer_id, identity.operator_address)
        if info is None and not opts.register:
            raise JoinError(
                f"node {key.peer_id} is not registered on chain: run `zoo-node join --register --stake <coins>` "
                "(or register it from the owner's wallet)"
            )
        notes.append("registered" if info is not None else "not registered yet: will register")
    with steps.step("Choosing the run") as notes:
        run_id = await asyncio.to_thread(directory.pick_run, config.run_id)
        run = await asyncio.to_thread(directory.client.runs.get_run, run_id)
        notes.append(f"run {run_id}")
        run_spec = _checked_run_spec(opts.run_spec or config.run_spec, run.spec_hash if run is not None else b"", home)
        if run_spec is not None:
            notes.append(f"spec {run_spec.name}")
    subreaper = enable_subreaper()
    node = NodeSupervisor(
        NodeOptions(
            home=home,
            config=config,
            run_id=run_id,
            control_key=key,
            operator=identity.operator_address,
            data_peer_id=identity.data_peer_id,
            directory=directory,
            config_flags=flags,
            extra_bootstrap=list(opts.bootstrap),
            worker_mode=opts.worker_mode,
            run_spec=run_spec,
            spec_hash=run.spec_hash if run is not None else b"",
            subreaper=subreaper,
        )
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, node.request_shutdown, f"got {signal.Signals(signum).name}")
    loop.add_signal_handler(signal.SIGHUP, node.reload)
    try:
        with steps.step("Starting the node API") as notes:
            await node.start_api()
            notes.append(str(node.api.socket_path))
            if node.metrics is not None:
                notes.append(f"metrics on 127.0.0.1:{node.metrics.port}")
        with steps.step("Opening the receipts journal") as notes:
            await node.open_journal()
            notes.append(f"{node.receipts_total} receipts, {node.receipts_unsettled} unsettled")
        with steps.step("Starting the libp2p host") as notes:
            notes.extend(await node.start_swarm())
        await _needed_transactions(node, directory, opts, steps)
        with steps.step("Reading the registered nodes") as notes:
            notes.append(f"{await node.refresh_registry()} registered")
        with steps.step("Bootstrapping") as notes:
            notes.append(f"connected to {await node.bootstrap()} peers")
        with steps.step("Joining the run's gossip and starting the worker") as notes:
            await node.start_worker_service()
            node.start_background()
            notes.append(", ".join(node.topics.all()))
    except BaseException:
        await node.close()
        raise
    node.mark_ready()
    if node.shutdown_requested:
        logger.info("a stop was requested during start-up")
    return await node.serve()


def join(opts: JoinOptions) -> int:
    """Run the node; returns its exit code, or exits the process at once if blocked threads would hold the exit.

    A chain request still retrying in a thread (the RPC is down) cannot be cancelled, and Python joins such threads
    before exiting: without this, SIGTERM would wait for the retries instead of the promised bound.
    """
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(run_join(opts))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # does not wait for the executor's threads
    lingering = [
        t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if lingering:
        logger.warning("exiting without waiting for %d blocked threads (%s)", len(lingering), ", ".join(lingering))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code

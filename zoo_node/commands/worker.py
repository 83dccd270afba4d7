"""`zoo-node worker`: run one data-plane worker in the foreground (the supervisor spawns the same data plane)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import typer

from zoo_node.config import resolve_home

HomeOption = typer.Option(None, "--home", help="Node home (default: $ZOO_NODE_HOME or ~/.zoo-node).")


def worker(
    run_spec: Path = typer.Option(..., "--run-spec", help="The run spec (TOML) to train; see docs/run-spec.md."),
    home: Path | None = HomeOption,
    peers: list[str] = typer.Option(
        [], "--peer", help="Multiaddr (with /p2p/<PeerID>) of a worker already in the run's DHT; repeatable."
    ),
    shards: str | None = typer.Option(
        None,
        "--shards",
        help="Comma-separated shards to serve (stage/<s>, experts/<s>/<g>); default: chosen by coverage.",
    ),
    num_shards: int = typer.Option(1, "--num-shards", min=1, help="How many shards to take when choosing."),
    drive: bool = typer.Option(True, "--drive/--no-drive", help="Drive micro-batches when serving stage/0."),
    json_out: bool = typer.Option(False, "--json", help="Print the worker's status as JSON lines."),
) -> None:
    """Join the run's DHT, serve and train shards, drive micro-batches; Ctrl-C or SIGTERM drains and exits."""
    from zoo_node.config import load_config
    from zoo_node.runspec import load_runspec
    from zoo_node.worker.node import WorkerNode, WorkerOptions, reap_children

    home_path = resolve_home(home)
    config = load_config(home_path)
    spec = load_runspec(run_spec)
    options = WorkerOptions(
        initial_peers=peers,
        shards=[s.strip() for s in shards.split(",") if s.strip()] if shards else None,
        num_shards=num_shards,
        drive=drive,
    )
    node = WorkerNode(home_path, config, spec, options)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous: dict = {}
    try:
        node.start()
        # Handlers only now: hivemind's DHT and averager processes are forked in start() and must not inherit them.
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        status = node.status()
        if json_out:
            typer.echo(json.dumps({"event": "started", **status}), nl=True)
        else:
            typer.echo(f"worker {status['peer']} serving {', '.join(status['shards'])} of run {spec.name}")
            typer.echo(f"  multiaddrs: {' '.join(status['maddrs'])}")
        while not stop.wait(1.0):  # a finished driver keeps serving its shards for the others until stopped
            pass
    finally:
        node.drain()
        reap_children()  # hivemind's DHT/averager processes and p2pd end with us
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if json_out:
        typer.echo(json.dumps({"event": "stopped", **node.status()}))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)

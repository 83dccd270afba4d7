"""`zoo-node join` (the node daemon) and `zoo-node status` (its NodeService client)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from zoo_node.config import resolve_home

HomeOption = typer.Option(None, "--home", help="Node home (default: $ZOO_NODE_HOME or ~/.zoo-node).")


def join(
    home: Path | None = HomeOption,
    run: int | None = typer.Option(None, "--run", help="Run to join (default: run_id in config, else the only one)."),
    bootstrap: list[str] = typer.Option(
        [], "--bootstrap", help="Multiaddr with /p2p/<PeerID> to dial at start (repeatable)."
    ),
    register: bool = typer.Option(False, "--register", help="Register the node on chain if it is not yet."),
    stake: str | None = typer.Option(None, "--stake", help="Coins to stake when registering (with --register)."),
    password_file: Path | None = typer.Option(
        None,
        "--password-file",
        help="Keystore password file, needed only to send transactions (else $ZOO_NODE_PASSWORD_FILE, the systemd "
        "credential, or a prompt).",
    ),
    run_spec: Path | None = typer.Option(
        None,
        "--run-spec",
        help="The run's spec file for the worker to train (default: run_spec in config); its hash must match the "
        "run's spec hash on chain.",
    ),
    worker_mode: str = typer.Option(
        "full",
        "--worker-mode",
        help="full: the node's work; lifecycle: a worker that only registers and reports (tests); none: no worker.",
    ),
) -> None:
    """Join the run's swarm and work for it until SIGTERM (the node daemon; run it under systemd)."""
    from zoo_node.control.join import JoinOptions
    from zoo_node.control.join import join as run_join
    from zoo_node.errors import ZooError

    if worker_mode not in ("full", "lifecycle", "none"):
        raise ZooError(f"--worker-mode {worker_mode!r}: expected full, lifecycle or none")
    code = run_join(
        JoinOptions(
            home=home,
            run_id=run,
            bootstrap=list(bootstrap),
            register=register,
            stake=stake,
            password_file=password_file,
            worker_mode=worker_mode,
            run_spec=run_spec,
        )
    )
    raise typer.Exit(code)


def _age(seconds: float) -> str:
    if seconds < 0:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    return f"{seconds / 60:.0f}m ago"


def status(
    home: Path | None = HomeOption,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Show a running node: its state, worker, peers, journal and gossip counters."""
    from zoo_node.control.status_client import NodeClient, proto_to_dict

    with NodeClient.for_home(resolve_home(home)) as client:
        reply = client.status()
    data = proto_to_dict(reply)
    if json_out:
        typer.echo(json.dumps(data))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    node, worker = data["node"], data["worker"]
    console.print(
        f"[bold]{node['state']}[/] node {node['peer_id']} (operator {node['operator']}) in run {node['run_id']}, "
        f"up {time.strftime('%H:%M:%S', time.gmtime(node['uptime_s']))}"
    )
    console.print(
        f"worker: {worker['health']} pid {worker['pid'] or '-'} shard {worker['shard'] or '-'}, "
        f"{worker['restarts']} restarts, last report {_age(worker['last_report_age_s'])}"
    )
    journal = data["journal"]
    console.print(f"journal: {journal['receipts']} receipts, {journal['unsettled']} unsettled ({journal['path']})")
    dropped = {k: v for k, v in data["gossip"]["dropped"].items() if v}
    console.print(
        f"gossip: in {data['gossip']['messages_in']}, out {data['gossip']['messages_out']}, dropped {dropped or 0}"
    )
    from zoo_node.chain.operator import format_coins

    rewards = data["rewards"]
    earned, claimable = (format_coins(int(rewards[k] or 0)) for k in ("earned_wei", "claimable_wei"))
    line = f"rewards: {earned} earned, {claimable} claimable"
    line += f" (to {rewards['account']}, epoch {rewards['epoch']}, read {_age(rewards['age_s'])})"
    console.print(line + (f" [yellow]{rewards['problem']}[/]" if rewards["problem"] else ""))
    table = Table("peer", "operator", "state", "last seen", "shard", "tokens/s", "health")
    for peer in data["peers"]:
        table.add_row(
            peer["peer_id"],
            peer["operator"],
            "alive" if peer["alive"] else "gone",
            _age(peer["last_seen_age_s"]),
            peer["shard"] or "-",
            f"{peer['throughput']:.0f}",
            peer["health"],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("join")(join)
    app.command("status")(status)

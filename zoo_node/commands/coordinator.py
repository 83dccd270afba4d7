"""Run owners' commands: `zoo-node coordinator run|settle|pause|resume|close`, `zoo-node dashboard` and
`zoo-node query nodes|node|run|spec|epochs|epoch`. Thin over `zoo_node.coordinator`."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import typer

HomeOption = typer.Option(
    None, "--home", help="Coordinator home, made by `zoo-node init` (default: $ZOO_NODE_HOME or ~/.zoo-node)."
)
AddressOption = typer.Option(
    None,
    "--coordinator",
    help="HOST:PORT of the CoordinatorService (default: $ZOO_NODE_COORDINATOR, else the address the coordinator in "
    "the home wrote, else coordinator.listen).",
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of text.")
ReasonOption = typer.Option("", "--reason", help="Why (logged by the coordinator).")

coordinator_app = typer.Typer(
    help="Run a training run's coordinator: register the run, watch the swarm, settle epochs.", no_args_is_help=True
)
query_app = typer.Typer(help="Ask a running coordinator about its run (add --json for scripts).", no_args_is_help=True)


def _client(address: str | None, home: Path | None, *, admin: bool = False):
    from zoo_node.config import load_config, resolve_home, resolve_in_home
    from zoo_node.coordinator.client import CoordinatorClient, coordinator_address
    from zoo_node.errors import ZooError

    home_path = resolve_home(home)
    token = None
    if admin:
        path = resolve_in_home(home_path, load_config(home_path).coordinator.admin_token_file)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ZooError(f"{path}: cannot read the coordinator's admin token: {exc.strerror}") from None
    return CoordinatorClient(coordinator_address(address, home_path), admin_token=token)


def _dict(message: Any) -> dict[str, Any]:
    from zoo_node.control.status_client import proto_to_dict

    return _json_safe(proto_to_dict(message))


def _json_safe(value: Any) -> Any:
    """NaN (a figure nobody reported) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data))


def _fmt(value: Any, fmt: str = "{:.4g}") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)


# ---- the daemon and its admin calls ------------------------------------------------------------------------
@coordinator_app.command("run")
def coordinator_run(
    spec: Path = typer.Option(..., "--spec", help="The run file: a run spec plus [settlement] (docs/run-spec.md)."),
    home: Path | None = HomeOption,
    password_file: Path | None = typer.Option(
        None,
        "--password-file",
        help="Keystore password file (else $ZOO_NODE_PASSWORD_FILE, the systemd credential, or a prompt).",
    ),
    run_id: int | None = typer.Option(
        None, "--run-id", min=1, help="Adopt this existing run (same spec hash, this home's operator as coordinator)."
    ),
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT of the API (default: coordinator.listen)."),
) -> None:
    """Register the run on chain, join its gossip, keep its time series, settle each epoch; until SIGTERM."""
    from zoo_node.coordinator.daemon import CoordinatorOptions, main

    flags = {"coordinator": {"listen": listen}} if listen else {}
    code = main(
        CoordinatorOptions(
            run_file=spec, home=home, password_file=password_file, adopt_run_id=run_id, config_flags=flags
        )
    )
    raise typer.Exit(code)


@coordinator_app.command("settle")
def coordinator_settle(
    home: Path | None = HomeOption, address: str | None = AddressOption, json_out: bool = JsonOption
) -> None:
    """Settle every ended epoch now (admin token from the home)."""
    with _client(address, home, admin=True) as client:
        reply = client.settle()
    data = _dict(reply)
    if json_out:
        _echo_json(data)
        return
    if not data["settled"]:
        typer.echo("no epoch has ended since the last settlement")
    for epoch in data["settled"]:
        typer.echo(
            f"epoch {epoch['epoch']}: paid {epoch['paid_wei']} wei, {epoch['accepted']} accepted, "
            f"{epoch['rejected']} rejected, root {epoch['root'] or '-'}"
        )


def _state_command(action: str):
    def command(
        home: Path | None = HomeOption,
        address: str | None = AddressOption,
        reason: str = ReasonOption,
        json_out: bool = JsonOption,
    ) -> None:
        with _client(address, home, admin=True) as client:
            reply = client.set_run_state(action, reason)
        if json_out:
            _echo_json(_dict(reply))
        else:
            typer.echo(f"the run is {reply.status}")

    command.__doc__ = {
        "pause": "Pause the run on chain (no settlement while paused; admin token from the home).",
        "resume": "Resume a paused run (admin token from the home).",
        "close": "Close the run for good; its unallocated pool becomes reclaimable (admin token from the home).",
    }[action]
    return command


# ---- dashboard ------------------------------------------------------------------------------------------------
def dashboard(
    address: str | None = AddressOption,
    home: Path | None = HomeOption,
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes."),
    width: int | None = typer.Option(None, "--width", min=60, help="Columns of the frame (default: the terminal)."),
) -> None:
    """A live view of the run: shards and replicas, nodes and health, loss and MFU trends, the epoch."""
    from rich.console import Console

    from zoo_node.coordinator.dashboard import render, take_snapshot, watch

    console = Console(width=width) if width else Console()
    with _client(address, home) as client:
        if once:
            console.print(render(take_snapshot(client)))
            return
        with contextlib.suppress(KeyboardInterrupt):
            watch(client, interval_s=interval, console=console)


# ---- queries --------------------------------------------------------------------------------------------------
@query_app.command("nodes")
def query_nodes(
    address: str | None = AddressOption,
    home: Path | None = HomeOption,
    alive: bool = typer.Option(False, "--alive", help="Only the nodes alive now."),
    json_out: bool = JsonOption,
) -> None:
    """Every node heard in the run's gossip: state, health, shard, figures."""
    with _client(address, home) as client:
        data = _dict(client.list_nodes(alive_only=alive))
    if json_out:
        _echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("node", "operator", "state", "health", "shard", "tokens/s", "loss", "MFU", "receipts", "last seen")
    now = time.time()
    for node in data["nodes"]:
        table.add_row(
            node["peer_id"],
            node["operator"],
            "alive" if node["alive"] else "gone",
            node["health"],
            node["shard"] or "-",
            _fmt(node["throughput"], "{:,.0f}"),
            _fmt(node["loss"]),
            _fmt(node["mfu"], "{:.2%}"),
            str(node["receipts"]),
            f"{max(0.0, now - node['last_seen_unix']):.0f}s ago",
        )
    Console().print(table)
    typer.echo(f"{data['alive']} alive, {data['gone']} gone")


@query_app.command("node")
def query_node(
    peer_id: str = typer.Argument(..., help="The node's control-plane PeerID."),
    address: str | None = AddressOption,
    home: Path | None = HomeOption,
    points: int = typer.Option(0, "--points", min=0, help="Points per series (0: the coordinator's default)."),
    json_out: bool = JsonOption,
) -> None:
    """One node with its recent throughput, loss and MFU series."""
    with _client(address, home) as client:
        data = _dict(client.get_node(peer_id, points))
    if json_out:
        _echo_json(data)
        return
    for key in ("peer_id", "operator", "data_peer_id", "shard", "health", "alive", "throughput", "loss", "mfu"):
        typer.echo(f"{key:<14} {data[key] if data[key] is not None else '-'}")
    typer.echo(f"{'receipts':<14} {data['receipts']}  heartbeats {data['heartbeats']}")


@query_app.command("run")
def query_run(
    address: str | None = AddressOption,
    home: Path | None = HomeOption,
    points: int = typer.Option(0, "--points", min=0, help="Points per series (0: the coordinator's default)."),
    json_out: bool = JsonOption,
) -> None:
    """The run: chain terms, per-shard coverage and throughput, tokens, loss and MFU, GPU-hours, receipts."""
    with _client(address, home) as client:
        data = _dict(client.get_run(max_points=points))
    if json_out:
        _echo_json(data)
        return
    typer.echo(f"run {data['name']} (#{data['run_id']}) {data['status']}, spec {data['spec_hash']}")
    typer.echo(
        f"epoch {data['current_epoch']} (length {data['epoch_length_s']} s), last settled "
        f"{data['last_settled_epoch'] or '-'}; reward {data['reward_per_epoch_wei']} wei per epoch"
    )
    typer.echo(
        f"nodes {data['nodes_alive']} alive, {data['nodes_gone']} gone; coverage {data['coverage']:.0%}; "
        f"{_fmt(data['throughput'], '{:,.0f}')} tokens/s; {data['tokens']:,} tokens"
    )
    typer.echo(
        f"loss {_fmt(data['loss'])} ({len(data['loss_series'])} points); MFU {_fmt(data['mfu'], '{:.2%}')}; "
        f"GPU-hours {data['gpu_hours']:.4f}; CPU-hours {data['cpu_hours']:.4f}"
    )
    r = data["receipts"]
    typer.echo(
        f"receipts {r['heard']} heard, {r['pending']} pending, {r['accepted']} accepted, {r['rejected']} rejected"
    )
    for shard in data["shards"]:
        typer.echo(
            f"  {shard['shard']:<16} {len(shard['replicas'])} replicas  {_fmt(shard['throughput'], '{:,.0f}')} tok/s"
        )
    if data["settlement_problem"]:
        typer.echo(f"settlement problem: {data['settlement_problem']}")


@query_app.command("spec")
def query_spec(address: str | None = AddressOption, home: Path | None = HomeOption, json_out: bool = JsonOption):
    """The run spec the coordinator registered (TOML), with its hash."""
    with _client(address, home) as client:
        reply = client.get_run_spec()
    if json_out:
        _echo_json(_dict(reply))
        return
    typer.echo(f"# spec hash {reply.spec_hash}")
    typer.echo(reply.toml, nl=False)


@query_app.command("epochs")
def query_epochs(address: str | None = AddressOption, home: Path | None = HomeOption, json_out: bool = JsonOption):
    """Settled epochs: root, allocation, this epoch's pay, accepted and rejected receipts."""
    with _client(address, home) as client:
        data = _dict(client.list_epochs())
    if json_out:
        _echo_json(data)
        return
    if not data["epochs"]:
        typer.echo("no epoch settled yet")
    for e in data["epochs"]:
        typer.echo(
            f"epoch {e['epoch']}: paid {e['paid_wei']} wei (allocated {e['allocated_wei']}), {e['accepted']} accepted, "
            f"{e['rejected']} rejected, root {e['root'] or '-'}"
        )


@query_app.command("epoch")
def query_epoch(
    epoch: int = typer.Argument(..., help="The epoch (from 1)."),
    address: str | None = AddressOption,
    home: Path | None = HomeOption,
    json_out: bool = JsonOption,
) -> None:
    """One settled epoch: rewards per owner and the rejected receipts with their reasons."""
    with _client(address, home) as client:
        reply = client.get_epoch(epoch)
    data = _dict(reply)
    if json_out:
        data["report"] = json.loads(data.pop("report_json"))
        _echo_json(data)
        return
    s = data["summary"]
    typer.echo(
        f"epoch {s['epoch']}: paid {s['paid_wei']} wei, root {s['root'] or '-'}, claims {s['claims_uri'] or '-'}"
    )
    for owner in data["owners"]:
        typer.echo(
            f"  {owner['owner']}: {owner['amount_wei']} wei (cumulative {owner['cumulative_wei']}), "
            f"{owner['verified_flops']} FLOPs, {owner['gpu_hours']:.4f} GPU-h, {owner['cpu_hours']:.4f} CPU-h"
        )
    for rejected in data["rejected"]:
        typer.echo(
            f"  rejected {rejected['shard'] or '-'} round {rejected['round']} from {rejected['announcer']}: "
            f"{rejected['reason']}: {rejected['detail']}"
        )


def register(app: typer.Typer) -> None:
    for action in ("pause", "resume", "close"):
        coordinator_app.command(action)(_state_command(action))
    app.add_typer(coordinator_app, name="coordinator")
    app.command("dashboard")(dashboard)
    app.add_typer(query_app, name="query")

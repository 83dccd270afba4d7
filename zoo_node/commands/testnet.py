"""`zoo-node testnet up|status|down`: the local multi-process network (anvil, coordinator, N nodes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from zoo_node.errors import ZooError

testnet_app = typer.Typer(help="Run the whole network on this machine (CPU is enough).", no_args_is_help=True)
DirOption = typer.Option(
    None, "--dir", help="Testnet folder (default: $ZOO_NODE_TESTNET_DIR or ~/.zoo-node-testnet); wiped by `up`."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of text.")


def _workdir(path: Path | None) -> Path:
    from zoo_node.testnet.network import TestnetOptions

    return (path or TestnetOptions().workdir).expanduser().absolute()


@testnet_app.command("up")
def up(
    nodes: int = typer.Option(4, "--nodes", min=2, max=16, help="Nodes to start (each a supervisor and a worker)."),
    preset: str = typer.Option("zen-3-tiny-moe", "--preset", help="Model preset to train."),
    steps: int = typer.Option(60, "--steps", min=1, help="Driver steps to train before settling."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Reward epochs to settle (the chain's clock is advanced)."),
    chaos: bool = typer.Option(False, "--chaos", help="kill -9 and restart random nodes while training."),
    detach: bool = typer.Option(False, "--detach", help="Run in the background; see `testnet status` / `down`."),
    timeout: float = typer.Option(900.0, "--timeout", min=10, help="Seconds allowed for training."),
    workdir: Path | None = DirOption,
    json_out: bool = JsonOption,
) -> None:
    """Start anvil, a coordinator and N nodes; train, settle epochs, claim rewards; print a summary; stop all."""
    from zoo_node.testnet.network import Testnet, TestnetOptions

    folder = _workdir(workdir)
    if detach:
        argv = [sys.executable, "-m", "zoo_node", "testnet", "up", "--nodes", str(nodes), "--preset", preset,
                "--steps", str(steps), "--epochs", str(epochs), "--timeout", str(timeout), "--dir", str(folder),
                "--json"] + (["--chaos"] if chaos else [])  # fmt: skip
        folder.parent.mkdir(parents=True, exist_ok=True)
        log_path = folder.parent / f"{folder.name}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        info = {"pid": proc.pid, "dir": str(folder), "log": str(log_path)}
        typer.echo(json.dumps(info) if json_out else f"testnet starting in the background (pid {proc.pid}); "
                   f"log {log_path}; `zoo-node testnet status --dir {folder}`")  # fmt: skip
        return

    options = TestnetOptions(
        nodes=nodes, preset=preset, steps=steps, epochs=epochs, chaos=chaos, workdir=folder, timeout_s=timeout
    )
    if sys.stderr.isatty() and not json_out:
        from rich.console import Console

        console = Console(stderr=True)
        status = console.status("starting")
        status.start()

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)
    else:
        import logging

        logger = logging.getLogger("zoo_node.testnet")

        def progress(message: str) -> None:
            logger.info(message)
            if not json_out:
                typer.echo(f"testnet: {message}", err=True)

        status = None
    try:
        summary = Testnet(options, progress).run()
    except KeyboardInterrupt:
        raise ZooError("testnet interrupted; every process it started was stopped") from None
    finally:
        if status is not None:
            status.stop()
    data = summary.as_dict()
    if json_out:
        typer.echo(json.dumps(data))
        return
    _print_summary(data)


SUMMARY_ROWS = (
    "nodes", "steps", "loss_first", "loss_last", "tokens", "mfu", "device_hours", "device_kind",
    "epochs_settled", "claims_paid", "rewards_paid_wei", "epochs_reward_wei", "receipts_accepted", "receipts_rejected",
    "chaos_kills", "receipts_journaled", "receipts_lost", "wall_s",
)  # fmt: skip


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_summary(data: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "value", title="testnet summary")
    for key in SUMMARY_ROWS:
        table.add_row(key, _fmt(data[key]))
    for node, wei in sorted(data["rewards"].items()):
        table.add_row(f"reward {node}", f"{int(wei) / 10**18:.6f} coins")
    Console().print(table)


@testnet_app.command("status")
def status(workdir: Path | None = DirOption, json_out: bool = JsonOption) -> None:
    """Show a testnet started with --detach (or the last one's outcome)."""
    from zoo_node.testnet.network import TestnetError, read_state
    from zoo_node.testnet.processes import pid_alive

    folder = _workdir(workdir)
    state = read_state(folder)
    if state is None:
        raise TestnetError(f"no testnet in {folder}")
    state["alive"] = bool(state.get("pid")) and pid_alive(int(state["pid"]))
    if json_out:
        typer.echo(json.dumps(state))
        return
    typer.echo(f"{state['status']} (pid {state.get('pid')}, {'alive' if state['alive'] else 'not running'})")
    typer.echo(f"  folder      {state['workdir']}")
    typer.echo(f"  chain       {state.get('rpc_url')}  run {state.get('run_id')}")
    typer.echo(f"  coordinator {state.get('coordinator') or '-'}")
    for name, pid in (state.get("processes") or {}).items():
        typer.echo(f"  {name:<12}pid {pid}")
    if state.get("summary"):
        _print_summary(state["summary"])
    if state.get("error"):
        typer.echo(f"  error: {state['error']}")


@testnet_app.command("down")
def down_cmd(workdir: Path | None = DirOption, json_out: bool = JsonOption) -> None:
    """Stop a testnet started with --detach, and everything it started."""
    from zoo_node.testnet.network import down

    result = down(_workdir(workdir))
    typer.echo(json.dumps(result) if json_out else f"stopped ({result['status']})")


def register(app: typer.Typer) -> None:
    app.add_typer(testnet_app, name="testnet")

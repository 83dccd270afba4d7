"""`zoo-node dashboard`: a live terminal view of a run, drawn with rich from CoordinatorService snapshots.

`take_snapshot(client)` asks the coordinator (GetRun, ListNodes, ListEpochs) and returns plain dicts;
`render(snapshot)` turns one snapshot into a rich renderable and `render_text` into a string (what `--once`
prints, and what tests look at). `watch` redraws with `rich.live.Live` until interrupted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from zoo_node.coordinator.client import CoordinatorClient

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 32
MAX_NODES_SHOWN = 40
EPOCHS_SHOWN = 5
_HEALTH_STYLE = {"serving": "green", "starting": "yellow", "draining": "yellow", "degraded": "red", "stopped": "red"}


def take_snapshot(client: CoordinatorClient, *, points: int = SPARK_WIDTH) -> dict[str, Any]:
    """One consistent-enough picture of the run: its view, its nodes and its settled epochs, as plain data."""
    from zoo_node.control.status_client import proto_to_dict

    return {
        "taken_at": time.time(),
        "address": client.address,
        "run": proto_to_dict(client.get_run(max_points=points)),
        "nodes": proto_to_dict(client.list_nodes()),
        "epochs": proto_to_dict(client.list_epochs())["epochs"],
    }


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters scaled between their min and max ("" for no values)."""
    values = [v for v in values if isinstance(v, int | float) and math.isfinite(v)][-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    if high - low <= 0:
        return SPARK[len(SPARK) // 2] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / (high - low) * len(SPARK)))] for v in values)


def _num(value: Any, fmt: str = "{:.3g}", missing: str = "-") -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return missing
    return fmt.format(value)


def _pct(value: Any) -> str:
    return _num(value * 100 if isinstance(value, int | float) else value, "{:.1f}%")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _short(peer_id: str) -> str:
    return peer_id if len(peer_id) <= 16 else f"{peer_id[:8]}…{peer_id[-6:]}"


def _coins(wei: str) -> str:
    try:
        return f"{int(wei) / 10**18:.6g}"
    except ValueError:
        return wei


def _series(run: dict[str, Any], name: str) -> list[float]:
    return [p["value"] for p in run.get(name, [])]


def _header(snapshot: dict[str, Any]) -> Text:
    run = snapshot["run"]
    now = snapshot["taken_at"]
    ends_in = run["next_epoch_end_unix"] - now
    status_style = "green" if run["status"] == "active" else "yellow"
    text = Text()
    text.append(f"run {run['name']} (#{run['run_id']}) ", style="bold")
    text.append(run["status"], style=status_style)
    text.append(
        f"  epoch {run['current_epoch']}"
        + (f" (ends in {max(0, ends_in) / 60:.0f}m)" if math.isfinite(ends_in) else "")
        + f", last settled {run['last_settled_epoch'] or '-'}"
    )
    text.append(f"  nodes {run['nodes_alive']} alive / {run['nodes_gone']} gone")
    text.append(f"  coverage {_pct(run['coverage'])}")
    text.append(f"  {_num(run['throughput'], '{:,.0f}')} tokens/s\n")
    text.append(f"loss {_num(run['loss'], '{:.4g}')} ", style="bold")
    text.append(sparkline(_series(run, "loss_series")), style="cyan")
    text.append(f"   MFU {_pct(run['mfu'])} ", style="bold")
    text.append(sparkline(_series(run, "mfu_series")), style="magenta")
    text.append(f"   throughput {sparkline(_series(run, 'throughput_series'))}\n")
    receipts = run["receipts"]
    text.append(
        f"GPU-hours {_num(run['gpu_hours'], '{:.3f}')}  CPU-hours {_num(run['cpu_hours'], '{:.3f}')}  "
        f"tokens {run['tokens']:,}  receipts: {receipts['heard']} heard, {receipts['pending']} pending, "
        f"{receipts['accepted']} accepted, {receipts['rejected']} rejected"
    )
    if run.get("settlement_problem"):
        text.append(f"\nsettlement problem: {run['settlement_problem']}", style="bold red")
    return text


def _shards_table(run: dict[str, Any]) -> Table:
    table = Table(title="shards", title_justify="left", expand=False)
    for column in ("shard", "replicas", "tokens/s", "nodes"):
        table.add_column(column)
    for shard in run["shards"]:
        replicas = shard["replicas"]
        table.add_row(
            shard["shard"],
            Text(str(len(replicas)), style="green" if shard["covered"] else "bold red"),
            _num(shard["throughput"], "{:,.0f}"),
            ", ".join(_short(p) for p in replicas) or "-",
        )
    return table


def _nodes_table(nodes: dict[str, Any], now: float) -> Table:
    table = Table(title="nodes", title_justify="left", expand=False)
    for column in ("node", "operator", "state", "health", "shard", "last seen", "tokens/s", "loss", "MFU", "receipts"):
        table.add_column(column)
    for node in nodes["nodes"][:MAX_NODES_SHOWN]:
        table.add_row(
            _short(node["peer_id"]),
            _short(node["operator"]),
            Text("alive", style="green") if node["alive"] else Text("gone", style="red"),
            Text(node["health"], style=_HEALTH_STYLE.get(node["health"], "")),
            node["shard"] or "-",
            _age(max(0.0, now - node["last_seen_unix"])),
            _num(node["throughput"], "{:,.0f}"),
            _num(node["loss"], "{:.4g}"),
            _pct(node["mfu"]),
            str(node["receipts"]),
        )
    hidden = len(nodes["nodes"]) - MAX_NODES_SHOWN
    if hidden > 0:
        table.caption = f"and {hidden} more (zoo-node query nodes)"
    return table


def _epochs_table(epochs: list[dict[str, Any]]) -> Table:
    table = Table(title="settled epochs", title_justify="left", expand=False)
    for column in ("epoch", "paid (coins)", "allocated (coins)", "accepted", "rejected", "root"):
        table.add_column(column)
    for epoch in epochs[-EPOCHS_SHOWN:]:
        table.add_row(
            str(epoch["epoch"]),
            _coins(epoch["paid_wei"]),
            _coins(epoch["allocated_wei"]),
            str(epoch["accepted"]),
            str(epoch["rejected"]),
            (epoch["root"][:18] + "…") if epoch["root"] else "-",
        )
    return table


def render(snapshot: dict[str, Any]) -> Group:
    """One frame of the dashboard."""
    parts: list[Any] = [
        _header(snapshot),
        _shards_table(snapshot["run"]),
        _nodes_table(snapshot["nodes"], snapshot["taken_at"]),
    ]
    if snapshot["epochs"]:
        parts.append(_epochs_table(snapshot["epochs"]))
    parts.append(Text(f"coordinator {snapshot['address']}", style="dim"))
    return Group(*parts)


def render_text(snapshot: dict[str, Any], width: int = 160) -> str:
    """A frame as plain text (no colours)."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=_Discard())
    console.print(render(snapshot))
    return console.export_text()


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def watch(client: CoordinatorClient, *, interval_s: float = 2.0, console: Console | None = None) -> None:
    """Redraw the dashboard every `interval_s` until Ctrl-C; an unreachable coordinator shows as a line, not a
    crash, and the view resumes when it is back."""
    from rich.live import Live

    from zoo_node.errors import ZooError

    console = console or Console()
    with Live(Text("connecting to " + client.address), console=console, refresh_per_second=4, screen=False) as live:
        while True:
            try:
                live.update(render(take_snapshot(client)))
            except ZooError as exc:
                live.update(Text(f"{time.strftime('%H:%M:%S')} {exc}", style="red"))
            time.sleep(interval_s)

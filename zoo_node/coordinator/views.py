"""CoordinatorService messages built from the coordinator's records (pure functions, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from zoo_node.coordinator.series import thin
from zoo_node.proto import coordinator_pb2

if TYPE_CHECKING:
    from zoo_node.coordinator.ledger import SettledEpoch
    from zoo_node.coordinator.store import NodePoint, NodeRecord, RunPoint

NAN = float("nan")
DEFAULT_POINTS = 120
MAX_POINTS = 10_000


def _nan(value: float | None) -> float:
    return NAN if value is None else float(value)


def points(series: Iterable[tuple[float, float | None]], max_points: int) -> list[coordinator_pb2.Point]:
    """(time, value) pairs without the missing values, thinned to `max_points`."""
    kept = [(t, v) for t, v in series if v is not None and math.isfinite(v)]
    return [coordinator_pb2.Point(unix_time=t, value=v) for t, v in thin(kept, max_points)]


def node_view(
    record: NodeRecord,
    *,
    alive: bool,
    now: float,
    series: Sequence[NodePoint] | None = None,
    max_points: int = DEFAULT_POINTS,
) -> coordinator_pb2.NodeView:
    view = coordinator_pb2.NodeView(
        peer_id=record.peer_id,
        operator=record.operator,
        data_peer_id=record.data_peer_id,
        shard=record.shard,
        health=record.health,
        alive=alive,
        first_seen_unix=record.first_seen,
        last_seen_unix=record.last_seen,
        last_seen_age_s=max(0.0, now - record.last_seen),
        throughput=record.throughput,
        loss=_nan(record.loss),
        mfu=_nan(record.mfu),
        version=record.version,
        multiaddrs=record.multiaddrs,
        receipts=record.receipts,
        heartbeats=record.heartbeats,
    )
    if series is not None:
        view.throughput_series.extend(points(((p.t, p.throughput) for p in series), max_points))
        view.loss_series.extend(points(((p.t, p.loss) for p in series), max_points))
        view.mfu_series.extend(points(((p.t, p.mfu) for p in series), max_points))
    return view


def run_series(view: coordinator_pb2.RunView, run_points: Sequence[RunPoint], max_points: int) -> None:
    """Fill the run's series from its sampled points."""
    view.loss_series.extend(points(((p.t, p.loss) for p in run_points), max_points))
    view.throughput_series.extend(points(((p.t, p.throughput) for p in run_points), max_points))
    view.mfu_series.extend(points(((p.t, p.mfu) for p in run_points), max_points))
    view.coverage_series.extend(points(((p.t, p.coverage) for p in run_points), max_points))
    view.nodes_series.extend(points(((p.t, float(p.nodes_alive)) for p in run_points), max_points))
    view.tokens_series.extend(points(((p.t, float(p.tokens)) for p in run_points), max_points))
    view.receipts_series.extend(points(((p.t, float(p.receipts)) for p in run_points), max_points))
    view.gpu_hours_series.extend(points(((p.t, p.gpu_hours) for p in run_points), max_points))
    view.cpu_hours_series.extend(points(((p.t, p.cpu_hours) for p in run_points), max_points))


def epoch_summary(settled: SettledEpoch, settled_at: float = 0.0) -> coordinator_pb2.EpochSummary:
    report = settled.report
    counts = report.get("counts", {})
    return coordinator_pb2.EpochSummary(
        epoch=settled.epoch,
        root="" if settled.root is None else "0x" + settled.root.hex(),
        allocated_wei=str(settled.allocated),
        paid_wei=str(report.get("paid_wei", "0")),
        accepted=int(counts.get("accepted", 0)),
        rejected=int(counts.get("rejected", 0)),
        settled_at_unix=settled_at,
        claims_uri=settled.claims_uri or "",
        total_verified_flops=str(report.get("total_verified_flops", "0")),
    )


def epoch_view(settled: SettledEpoch, report_json: str, settled_at: float = 0.0) -> coordinator_pb2.EpochView:
    report = settled.report
    view = coordinator_pb2.EpochView(summary=epoch_summary(settled, settled_at), report_json=report_json)
    for owner, figures in sorted(report.get("owners", {}).items()):
        view.owners.add(
            owner=owner,
            amount_wei=str(figures.get("amount_wei", "0")),
            cumulative_wei=str(figures.get("cumulative_wei", "0")),
            verified_flops=str(figures.get("verified_flops", "0")),
            gpu_hours=float(figures.get("gpu_hours", 0.0)),
            cpu_hours=float(figures.get("cpu_hours", 0.0)),
            mfu=_nan(figures.get("mfu")),
            nodes=list(figures.get("nodes", [])),
        )
    for rejected in report.get("rejected", []):
        view.rejected.add(
            announcer=rejected.get("announcer", ""),
            shard=rejected.get("shard") or "",
            round=int(rejected.get("round") or 0),
            digest=rejected.get("digest") or "",
            reason=rejected.get("reason", ""),
            detail=rejected.get("detail", ""),
        )
    return view


def settled_hours(reports: Iterable[dict[str, Any]]) -> tuple[float, float]:
    """(GPU-hours, CPU-hours) credited in settled epochs."""
    gpu = cpu = 0.0
    for report in reports:
        for figures in report.get("owners", {}).values():
            gpu += float(figures.get("gpu_hours", 0.0))
            cpu += float(figures.get("cpu_hours", 0.0))
    return gpu, cpu


def settled_mfu(report: dict[str, Any]) -> float | None:
    """The epoch's MFU over its credited nodes: verified FLOPs / (seconds x peak), summed over nodes."""
    flops = denominator = 0.0
    for figures in report.get("nodes", {}).values():
        mfu = figures.get("mfu")
        node_flops = float(figures.get("verified_flops", 0))
        if mfu and node_flops > 0:
            flops += node_flops
            denominator += node_flops / mfu
    return flops / denominator if denominator > 0 else None


def pending_hours(device_seconds: Iterable[tuple[str, float]]) -> tuple[float, float]:
    """(GPU-hours, CPU-hours) of receipts not settled yet, from their device labels ("<name> x<count>")."""
    from zoo_node.peaks import parse_device_label

    gpu = cpu = 0.0
    for device, seconds in device_seconds:
        label = parse_device_label(device or "")
        name, count = (label[0], label[1]) if label is not None else (device or "cpu", 1)
        if name.strip().lower() in ("", "cpu"):
            cpu += seconds * max(count, 1) / 3600.0
        else:
            gpu += seconds * max(count, 1) / 3600.0
    return gpu, cpu

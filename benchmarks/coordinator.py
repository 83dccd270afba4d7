"""Coordinator benchmark: what keeping receipts durable costs, and what a day of history costs a GetRun.

1. Receipts: the coordinator commits every heard receipt (SQLite WAL, synchronous=FULL) before counting it; receipts
   that arrive while a commit runs share the next one (group commit). Measured: one fsync per receipt, and groups of
   20. Peer: the same rows inserted with synchronous=OFF in one transaction (SQLite's floor, no durability). Prints
   receipts/s of each and the ratios.
2. Series: GetRun reads the run's sampled points thinned to `max_points` (in SQLite) and builds its series. A day of
   5-s samples (17,280 points) against one hour (720), both thinned to 120 points. Prints ms of each and the ratio.

Run: `python benchmarks/coordinator.py [--receipts 300]`. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo_node.coordinator.store import CoordinatorStore, RunPoint
from zoo_node.coordinator.views import run_series
from zoo_node.proto import coordinator_pb2

GROUP = 20


def _rows(n: int) -> list[dict]:
    return [
        dict(run_id=1, announcer=f"12D3KooW{i % 50:04d}", digest=os.urandom(32), shard="stage/0", round=i, tokens=512,
             flops=1e12, seconds=10.0, device="cpu x1", receipt=os.urandom(400))
        for i in range(n)
    ]  # fmt: skip


def receipts_per_s(n: int, tmp: Path) -> tuple[float, float, float]:
    rows = _rows(n)
    store = CoordinatorStore(tmp / "durable.sqlite3")
    start = time.perf_counter()
    for row in rows:
        store.add_receipt(**row)
    durable = n / (time.perf_counter() - start)
    start = time.perf_counter()
    rows = _rows(n)
    for i in range(0, n, GROUP):
        store.add_receipts(rows[i : i + GROUP])
    grouped = n / (time.perf_counter() - start)
    store.close()

    db = sqlite3.connect(tmp / "floor.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(
        "CREATE TABLE receipts (id INTEGER PRIMARY KEY, run_id, announcer, digest, shard, round, tokens, flops, "
        "seconds, device, receipt, heard_at, UNIQUE (announcer, digest))"
    )
    start = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO receipts (run_id, announcer, digest, shard, round, tokens, flops, seconds, device, receipt, "
        "heard_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(*r.values(), time.time()) for r in rows],
    )
    db.execute("COMMIT")
    floor = n / (time.perf_counter() - start)
    db.close()
    return durable, grouped, floor


def series_ms(points: int, tmp: Path, repeats: int = 5) -> float:
    store = CoordinatorStore(tmp / f"series-{points}.sqlite3")
    store._db.execute("PRAGMA synchronous=OFF")  # setup only: a day of samples without a day of fsyncs
    for i in range(points):
        store.add_run_point(
            RunPoint(float(i * 5), 3, 0, 1.0, 240.0, 3.0 - i * 1e-4, 0.3, i * 512, {"stage/0": (2, 160.0)})
        )
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        view = coordinator_pb2.RunView()
        run_series(view, store.run_points(max_points=120), 120)
        best = min(best, time.perf_counter() - start)
    store.close()
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        durable, grouped, floor = receipts_per_s(args.receipts, Path(tmp))
        day, hour = series_ms(17_280, Path(tmp)), series_ms(720, Path(tmp))
    print(json.dumps({
        "receipts": args.receipts,
        "durable_receipts_per_s": round(durable, 1),
        f"durable_groups_of_{GROUP}_receipts_per_s": round(grouped, 1),
        "floor_receipts_per_s": round(floor, 1),
        "durable_over_floor": round(durable / floor, 4),
        "grouped_over_floor": round(grouped / floor, 4),
        "get_run_series_day_ms": round(day, 2),
        "get_run_series_hour_ms": round(hour, 2),
        "day_over_hour": round(day / hour, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()

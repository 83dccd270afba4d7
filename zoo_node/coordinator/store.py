"""The coordinator's time series and receipts: SQLite in WAL mode (`synchronous=FULL`) in the coordinator's home.

What it keeps, and why it survives kill -9:

- `receipts`: every receipt announced in the run's gossip, committed on arrival (before anything else looks at
  it), deduplicated by (announcer, digest); `epoch` is set when a settled epoch covered it.
- `epoch_intents`: what an epoch's settlement is about to post (its receipts, the directory it checked them
  against, the root), written before the root is sent, so that a restart finishes the same settlement instead of
  computing another one.
- `nodes`, `bindings`: every node heard (latest figures) and the verified worker bindings (data-plane PeerID ->
  control PeerID) that settlement needs to attribute co-signatures.
- `run_points`, `node_points`: the sampled time series (coverage, throughput, loss, MFU, nodes).
- `meta`: the run id, the FLOPs table, the run-creation intent.

Thread-safe: one connection behind a lock; every call is short.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_node.errors import ZooError

STORE_FILE = "coordinator.sqlite3"
SCHEMA_VERSION = 1
# Per-node series are kept this long (the run's series are kept for the whole run).
NODE_SERIES_RETENTION_S = 24 * 3600.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    peer_id TEXT PRIMARY KEY,       -- control-plane PeerID
    operator TEXT NOT NULL,
    data_peer_id TEXT NOT NULL,
    shard TEXT NOT NULL,
    health INTEGER NOT NULL,
    throughput REAL NOT NULL,
    loss REAL,                      -- NULL: not reported
    mfu REAL,
    version TEXT NOT NULL,
    multiaddrs TEXT NOT NULL,       -- JSON list
    first_seen REAL NOT NULL,       -- unix seconds (the coordinator's clock)
    last_seen REAL NOT NULL,
    heartbeats INTEGER NOT NULL,
    receipts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    data_peer_id TEXT PRIMARY KEY,
    control_peer_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    announcer TEXT NOT NULL,        -- control PeerID of the gossip's (verified) origin
    digest BLOB NOT NULL,           -- round digest (sha256 of the bytes when the receipt does not parse)
    shard TEXT NOT NULL,
    round INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    flops REAL NOT NULL,
    seconds REAL NOT NULL,
    device TEXT NOT NULL,
    receipt BLOB NOT NULL,          -- the serialized zoo.node.v1.Receipt, as heard
    heard_at REAL NOT NULL,
    epoch INTEGER,                  -- NULL until a settled epoch covers it
    UNIQUE (announcer, digest)
);
CREATE INDEX IF NOT EXISTS receipts_pending ON receipts (run_id, id) WHERE epoch IS NULL;
CREATE TABLE IF NOT EXISTS epoch_intents (
    run_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    intent TEXT NOT NULL,           -- JSON: receipt ids, terms, directory snapshot, expected root
    created_at REAL NOT NULL,
    done_at REAL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS run_points (
    t REAL NOT NULL,
    nodes_alive INTEGER NOT NULL,
    nodes_gone INTEGER NOT NULL,
    coverage REAL NOT NULL,
    throughput REAL NOT NULL,
    loss REAL,
    mfu REAL,
    tokens INTEGER NOT NULL,
    shards TEXT NOT NULL,           -- JSON: shard -> [replicas, throughput]
    receipts INTEGER NOT NULL,      -- distinct receipts heard so far
    gpu_hours REAL NOT NULL,        -- settled plus pending
    cpu_hours REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS run_points_t ON run_points (t);
CREATE TABLE IF NOT EXISTS node_points (
    t REAL NOT NULL,
    peer_id TEXT NOT NULL,
    throughput REAL NOT NULL,
    loss REAL,
    mfu REAL
);
CREATE INDEX IF NOT EXISTS node_points_peer_t ON node_points (peer_id, t);
"""


class StoreError(ZooError):
    """The coordinator's store cannot be opened or written."""


def _opt(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class NodeRecord:
    """What the coordinator knows of one node (a row of `nodes`)."""

    peer_id: str
    operator: str = ""
    data_peer_id: str = ""
    shard: str = ""
    health: int = 0
    throughput: float = 0.0
    loss: float | None = None
    mfu: float | None = None
    version: str = ""
    multiaddrs: list[str] = field(default_factory=list)
    first_seen: float = 0.0
    last_seen: float = 0.0
    heartbeats: int = 0
    receipts: int = 0


@dataclass(frozen=True)
class StoredReceipt:
    id: int
    announcer: str
    digest: bytes
    shard: str
    round: int
    tokens: int
    flops: float
    seconds: float
    device: str
    receipt: bytes
    heard_at: float
    epoch: int | None


@dataclass(frozen=True)
class RunPoint:
    """One sample of the run's series."""

    t: float
    nodes_alive: int
    nodes_gone: int
    coverage: float
    throughput: float
    loss: float | None
    mfu: float | None
    tokens: int
    shards: dict[str, tuple[int, float]]  # shard -> (alive replicas, tokens/s)
    receipts: int = 0
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0


@dataclass(frozen=True)
class NodePoint:
    t: float
    peer_id: str
    throughput: float
    loss: float | None
    mfu: float | None


@dataclass(frozen=True)
class ReceiptTotals:
    heard: int
    pending: int
    tokens: int


class CoordinatorStore:
    """The coordinator's durable state (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a receipt's commit is fsynced before we count it as heard.
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema {version} is newer than this zoo-node's {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the coordinator's store: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the coordinator's store: {exc.strerror}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._db.execute(sql, tuple(args))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: write failed: {exc}") from None

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # ---- meta
    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> None:
        self._write("DELETE FROM meta WHERE key = ?", (key,))

    # ---- nodes and bindings
    def save_nodes(self, records: Iterable[NodeRecord], points: Iterable[NodePoint] = ()) -> None:
        """Upsert node rows and append their series points, in one transaction."""
        rows = [
            (
                r.peer_id, r.operator, r.data_peer_id, r.shard, r.health, r.throughput, _opt(r.loss), _opt(r.mfu),
                r.version, json.dumps(r.multiaddrs), r.first_seen, r.last_seen, r.heartbeats, r.receipts,
            )
            for r in records
        ]  # fmt: skip
        samples = [(p.t, p.peer_id, p.throughput, _opt(p.loss), _opt(p.mfu)) for p in points]
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO nodes (peer_id, operator, data_peer_id, shard, health, throughput, loss, mfu, "
                    "version, multiaddrs, first_seen, last_seen, heartbeats, receipts) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (peer_id) DO UPDATE SET operator = excluded.operator, "
                    "data_peer_id = excluded.data_peer_id, shard = excluded.shard, health = excluded.health, "
                    "throughput = excluded.throughput, loss = excluded.loss, mfu = excluded.mfu, "
                    "version = excluded.version, multiaddrs = excluded.multiaddrs, last_seen = excluded.last_seen, "
                    "heartbeats = excluded.heartbeats, receipts = excluded.receipts",
                    rows,
                )
                self._db.executemany(
                    "INSERT INTO node_points (t, peer_id, throughput, loss, mfu) VALUES (?,?,?,?,?)", samples
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot save nodes: {exc}") from None

    def nodes(self) -> list[NodeRecord]:
        rows = self._read(
            "SELECT peer_id, operator, data_peer_id, shard, health, throughput, loss, mfu, version, multiaddrs, "
            "first_seen, last_seen, heartbeats, receipts FROM nodes ORDER BY peer_id"
        )
        return [NodeRecord(*row[:9], json.loads(row[9]), *row[10:]) for row in rows]

    def node_points(self, peer_id: str, since: float = 0.0, max_points: int = 0) -> list[NodePoint]:
        """The node's samples after `since`, oldest first; at most about `max_points` evenly spread (0: all)."""
        columns = "t, peer_id, throughput, loss, mfu"
        rows = self._thinned(columns, "node_points", "peer_id = ?", (peer_id,), since, max_points)
        return [NodePoint(*row) for row in rows]

    def _thinned(
        self, columns: str, table: str, key: str, key_args: tuple, since: float, max_points: int
    ) -> list[tuple]:
        """Rows of `table` matching `key` with t > `since`, oldest first; when there are more than `max_points`, the
        first row at or after each of `max_points` times evenly spread from the first to the last (the last is
        always there).

        Each pick is one index seek (one lower bound on t, so that SQLite seeks to it instead of scanning from
        `since`): a long run's series costs `max_points` lookups, not a scan of its history.
        """
        select = f"SELECT {columns} FROM {table} WHERE {key} AND t "
        with self._lock:
            if max_points <= 0:
                return self._db.execute(select + "> ? ORDER BY t", (*key_args, since)).fetchall()
            few = self._db.execute(select + "> ? ORDER BY t LIMIT ?", (*key_args, since, max_points + 1)).fetchall()
            if len(few) <= max_points:
                return few
            first = few[0][0]
            last = self._db.execute(select + "> ? ORDER BY t DESC LIMIT 1", (*key_args, since)).fetchone()[0]
            rows: list[tuple] = []
            for i in range(max_points):
                target = first + (last - first) * i / (max_points - 1)
                row = self._db.execute(select + ">= ? ORDER BY t LIMIT 1", (*key_args, target)).fetchone()
                if row is not None and (not rows or row[0] > rows[-1][0]):
                    rows.append(row)
            return rows

    def prune_node_points(self, older_than: float) -> int:
        return self._write("DELETE FROM node_points WHERE t < ?", (older_than,)).rowcount

    def add_binding(self, data_peer_id: str, control_peer_id: str, run_id: int, at: float | None = None) -> None:
        self._write(
            "INSERT INTO bindings (data_peer_id, control_peer_id, run_id, seen_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (data_peer_id) DO UPDATE SET control_peer_id = excluded.control_peer_id, "
            "run_id = excluded.run_id, seen_at = excluded.seen_at",
            (data_peer_id, control_peer_id, run_id, time.time() if at is None else at),
        )

    def bindings(self, run_id: int) -> dict[str, str]:
        """data-plane PeerID -> control PeerID, for the run."""
        return dict(self._read("SELECT data_peer_id, control_peer_id FROM bindings WHERE run_id = ?", (run_id,)))

    # ---- receipts
    def add_receipt(self, **receipt: Any) -> tuple[int, bool]:
        """Commit one heard receipt (see `add_receipts`); returns (id, new)."""
        return self.add_receipts([receipt])[0]

    def add_receipts(self, receipts: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        """Commit heard receipts in one fsynced transaction; returns (id, new) of each, in order.

        Each is a dict of run_id, announcer, digest, shard, round, tokens, flops, seconds, device, receipt and
        optionally heard_at. The same (announcer, digest) again is not new: it keeps its first id.
        """
        results: list[tuple[int, bool]] = []
        now = time.time()
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for r in receipts:
                    cursor = self._db.execute(
                        "INSERT INTO receipts (run_id, announcer, digest, shard, round, tokens, flops, seconds, "
                        "device, receipt, heard_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                        "ON CONFLICT (announcer, digest) DO NOTHING",
                        (r["run_id"], r["announcer"], r["digest"], r["shard"], r["round"], r["tokens"],
                         _opt(r["flops"]) or 0.0, _opt(r["seconds"]) or 0.0, r["device"], r["receipt"],
                         r.get("heard_at") or now),
                    )  # fmt: skip
                    if cursor.rowcount == 1:
                        results.append((int(cursor.lastrowid), True))
                    else:
                        row = self._db.execute(
                            "SELECT id FROM receipts WHERE announcer = ? AND digest = ?", (r["announcer"], r["digest"])
                        ).fetchone()
                        results.append((int(row[0]), False))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot commit {len(receipts)} receipt(s): {exc}") from None
        return results

    _RECEIPT_COLUMNS = "id, announcer, digest, shard, round, tokens, flops, seconds, device, receipt, heard_at, epoch"

    def pending_receipts(self, run_id: int, heard_before: float | None = None) -> list[StoredReceipt]:
        """Receipts no settled epoch covers yet, in the order heard."""
        sql = f"SELECT {self._RECEIPT_COLUMNS} FROM receipts WHERE run_id = ? AND epoch IS NULL"
        args: list[Any] = [run_id]
        if heard_before is not None:
            sql += " AND heard_at < ?"
            args.append(heard_before)
        return [self._receipt(row) for row in self._read(sql + " ORDER BY id", args)]

    def receipts_by_id(self, ids: Iterable[int]) -> list[StoredReceipt]:
        wanted = list(ids)
        found: dict[int, StoredReceipt] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT {self._RECEIPT_COLUMNS} FROM receipts WHERE id IN ({marks})", chunk)
            found.update((row[0], self._receipt(row)) for row in rows)
        return [found[i] for i in wanted if i in found]

    @staticmethod
    def _receipt(row: tuple) -> StoredReceipt:
        return StoredReceipt(
            int(row[0]), row[1], bytes(row[2]), row[3], int(row[4]), int(row[5]), float(row[6]), float(row[7]),
            row[8], bytes(row[9]), float(row[10]), None if row[11] is None else int(row[11]),
        )  # fmt: skip

    def receipt_totals(self, run_id: int) -> ReceiptTotals:
        heard, pending, tokens = self._read(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE epoch IS NULL), COALESCE(SUM(tokens), 0) FROM receipts "
            "WHERE run_id = ?",
            (run_id,),
        )[0]
        return ReceiptTotals(int(heard), int(pending), int(tokens))

    def pending_device_seconds(self, run_id: int) -> list[tuple[str, float]]:
        """(device label, seconds) of the receipts no settled epoch covers yet."""
        return self._read(
            "SELECT device, SUM(seconds) FROM receipts WHERE run_id = ? AND epoch IS NULL GROUP BY device", (run_id,)
        )

    # ---- epoch intents
    def save_intent(self, run_id: int, epoch: int, intent: dict[str, Any]) -> None:
        """Record what epoch `epoch`'s settlement is about to post (replaces an unfinished intent of that epoch)."""
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT done_at FROM epoch_intents WHERE run_id = ? AND epoch = ?", (run_id, epoch)
                ).fetchone()
                if row is not None and row[0] is not None:
                    raise StoreError(f"run {run_id}: epoch {epoch} is already settled")
                self._db.execute(
                    "INSERT INTO epoch_intents (run_id, epoch, intent, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run_id, epoch) DO UPDATE SET intent = excluded.intent, "
                    "created_at = excluded.created_at",
                    (run_id, epoch, json.dumps(intent, sort_keys=True), time.time()),
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot record the intent of epoch {epoch}: {exc}") from None

    def unfinished_intent(self, run_id: int) -> tuple[int, dict[str, Any]] | None:
        """The intent of an epoch whose settlement was started but not finished (at most one), or None."""
        rows = self._read(
            "SELECT epoch, intent FROM epoch_intents WHERE run_id = ? AND done_at IS NULL ORDER BY epoch LIMIT 1",
            (run_id,),
        )
        return (int(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def finish_intent(self, run_id: int, epoch: int, receipt_ids: Iterable[int]) -> None:
        """Mark the epoch's receipts as covered and its intent done, in one transaction."""
        ids = list(receipt_ids)
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "UPDATE receipts SET epoch = ? WHERE id = ? AND epoch IS NULL", [(epoch, i) for i in ids]
                )
                self._db.execute(
                    "UPDATE epoch_intents SET done_at = ? WHERE run_id = ? AND epoch = ?", (time.time(), run_id, epoch)
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot finish epoch {epoch}: {exc}") from None

    def settled_times(self, run_id: int) -> dict[int, float]:
        """epoch -> unix time its settlement finished."""
        rows = self._read(
            "SELECT epoch, done_at FROM epoch_intents WHERE run_id = ? AND done_at IS NOT NULL", (run_id,)
        )
        return {int(e): float(t) for e, t in rows}

    def epoch_of_receipts(self, run_id: int) -> dict[int, int]:
        """epoch -> how many receipts it covered (a check that no receipt is counted twice)."""
        rows = self._read(
            "SELECT epoch, COUNT(*) FROM receipts WHERE run_id = ? AND epoch IS NOT NULL GROUP BY epoch", (run_id,)
        )
        return {int(e): int(n) for e, n in rows}

    # ---- run series
    def add_run_point(self, point: RunPoint) -> None:
        self._write(
            "INSERT INTO run_points (t, nodes_alive, nodes_gone, coverage, throughput, loss, mfu, tokens, shards, "
            "receipts, gpu_hours, cpu_hours) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                point.t, point.nodes_alive, point.nodes_gone, point.coverage, point.throughput, _opt(point.loss),
                _opt(point.mfu), point.tokens, json.dumps({k: list(v) for k, v in point.shards.items()}),
                point.receipts, point.gpu_hours, point.cpu_hours,
            ),
        )  # fmt: skip

    def run_points(self, since: float = 0.0, max_points: int = 0) -> list[RunPoint]:
        """The run's samples after `since`, oldest first; at most about `max_points` evenly spread (0: all)."""
        columns = "t, nodes_alive, nodes_gone, coverage, throughput, loss, mfu, tokens, shards, receipts, gpu_hours, "
        columns += "cpu_hours"
        rows = self._thinned(columns, "run_points", "1", (), since, max_points)
        return [
            RunPoint(*row[:8], {k: (int(v[0]), float(v[1])) for k, v in json.loads(row[8]).items()}, *row[9:])
            for row in rows
        ]

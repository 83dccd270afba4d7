"""The receipts journal: SQLite in WAL mode in the node's home.

A receipt is committed (WAL, `synchronous=FULL`: the commit is fsynced) before the worker is told it is safe, so an
acknowledged receipt survives kill -9 of the worker or the supervisor, and a power cut. It stays until it is settled
on chain; settled receipts may be pruned. (run, shard, round) is unique: a worker that resubmits after a crash gets
the same id back.

Not thread-safe by itself: the supervisor calls it from one dedicated thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from zoo_node.errors import ZooError
from zoo_node.proto import worker_pb2

JOURNAL_FILE = "journal.sqlite3"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    shard TEXT NOT NULL,
    round INTEGER NOT NULL,
    receipt BLOB NOT NULL,          -- a serialized zoo.node.v1.Receipt
    journaled_at REAL NOT NULL,     -- unix seconds
    gossiped_at REAL,               -- last announcement on the run's receipt topic
    settled_at REAL,                -- when an epoch settlement covered it
    UNIQUE (run_id, shard, round)
);
CREATE INDEX IF NOT EXISTS receipts_unsettled ON receipts (id) WHERE settled_at IS NULL;
"""


class JournalError(ZooError):
    """The journal cannot be opened or written."""


class ReceiptConflict(JournalError):
    """A different receipt for a (run, shard, round) that is already journaled."""


@dataclass(frozen=True)
class JournalCounts:
    receipts: int
    unsettled: int
    ungossiped: int


class ReceiptJournal:
    """Durable store of this node's receipts."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit is fsynced (NORMAL in WAL mode survives a process crash but not a power cut).
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path}: journal schema {version} is newer than this zoo-node ({SCHEMA_VERSION})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{self.path}: cannot open the receipts journal: {exc}") from None

    @property
    def journal_mode(self) -> str:
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    def append(self, receipt: worker_pb2.Receipt) -> tuple[int, bool]:
        """Commit a receipt durably; returns (id, duplicate). Raises ReceiptConflict for a different one."""
        blob = receipt.SerializeToString(deterministic=True)
        try:
            cursor = self._db.execute(
                "INSERT INTO receipts (run_id, shard, round, receipt, journaled_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, shard, round) DO NOTHING",
                (receipt.run_id, receipt.shard, receipt.round, blob, time.time()),
            )
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{self.path}: cannot write a receipt: {exc}") from None
        if cursor.rowcount == 1:
            return int(cursor.lastrowid), False
        row = self._db.execute(
            "SELECT id, receipt FROM receipts WHERE run_id = ? AND shard = ? AND round = ?",
            (receipt.run_id, receipt.shard, receipt.round),
        ).fetchone()
        if row[1] != blob:
            raise ReceiptConflict(
                f"run {receipt.run_id} shard {receipt.shard} round {receipt.round}: "
                f"a different receipt is already journaled (id {row[0]})"
            )
        return int(row[0]), True

    def get(self, receipt_id: int) -> worker_pb2.Receipt | None:
        row = self._db.execute("SELECT receipt FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        return None if row is None else worker_pb2.Receipt.FromString(row[0])

    def ungossiped(self, limit: int = 100) -> list[tuple[int, worker_pb2.Receipt]]:
        """Unsettled receipts never announced, oldest first."""
        rows = self._db.execute(
            "SELECT id, receipt FROM receipts WHERE gossiped_at IS NULL AND settled_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [(int(i), worker_pb2.Receipt.FromString(blob)) for i, blob in rows]

    def unsettled(self, limit: int = 1000) -> list[tuple[int, worker_pb2.Receipt]]:
        rows = self._db.execute(
            "SELECT id, receipt FROM receipts WHERE settled_at IS NULL ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [(int(i), worker_pb2.Receipt.FromString(blob)) for i, blob in rows]

    def mark_gossiped(self, ids: Iterable[int], at: float | None = None) -> None:
        at = time.time() if at is None else at
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE receipts SET gossiped_at = ? WHERE id = ?", [(at, i) for i in ids])

    def mark_settled(self, ids: Iterable[int], at: float | None = None) -> int:
        """Mark receipts as covered by a settlement; returns how many changed."""
        at = time.time() if at is None else at
        with self._db:
            self._db.execute("BEGIN")
            cursor = self._db.executemany(
                "UPDATE receipts SET settled_at = ? WHERE id = ? AND settled_at IS NULL", [(at, i) for i in ids]
            )
        return cursor.rowcount

    def mark_settled_before(self, unix_time: float, at: float | None = None) -> int:
        """Mark as settled every announced receipt journaled before `unix_time` (the end of the run's last settled
        epoch). One never announced was not in that settlement: it stays, is announced, and a later epoch counts it
        (marking it settled would have dropped earned work; the testnet's receipt count caught that)."""
        at = time.time() if at is None else at
        cursor = self._db.execute(
            "UPDATE receipts SET settled_at = ? WHERE settled_at IS NULL AND gossiped_at IS NOT NULL "
            "AND journaled_at < ?",
            (at, unix_time),
        )
        return cursor.rowcount

    def prune_settled(self, older_than_s: float) -> int:
        """Delete receipts settled more than `older_than_s` ago (unsettled ones are never deleted)."""
        cursor = self._db.execute(
            "DELETE FROM receipts WHERE settled_at IS NOT NULL AND settled_at < ?", (time.time() - older_than_s,)
        )
        return cursor.rowcount

    def counts(self) -> JournalCounts:
        total, unsettled, ungossiped = self._db.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE settled_at IS NULL), "
            "COUNT(*) FILTER (WHERE gossiped_at IS NULL AND settled_at IS NULL) FROM receipts"
        ).fetchone()
        return JournalCounts(int(total), int(unsettled), int(ungossiped))

    def close(self) -> None:
        self._db.close()

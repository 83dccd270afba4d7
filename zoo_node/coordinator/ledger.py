"""The coordinator's settlement ledger: SQLite (WAL, fsynced commits) in the coordinator's home.

It remembers across restarts what settlement must never forget: every (shard, round, worker) credited and by which
receipt digest (the replay guard), every owner's cumulative amount (the leaves of the next Merkle tree), and every
settled epoch with its root and report. An epoch is committed in one transaction, after its root is on chain.
Amounts are decimal text (they exceed SQLite's 64-bit integers).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_node.coordinator.checks import CreditedRound
from zoo_node.errors import ZooError

LEDGER_FILE = "settlement.sqlite3"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS credited (
    run_id INTEGER NOT NULL,
    shard TEXT NOT NULL,
    round INTEGER NOT NULL,
    worker TEXT NOT NULL,           -- data-plane PeerID
    digest BLOB NOT NULL,           -- the round digest that was credited
    epoch INTEGER NOT NULL,
    PRIMARY KEY (run_id, shard, round, worker)
);
CREATE TABLE IF NOT EXISTS cumulative (
    run_id INTEGER NOT NULL,
    owner TEXT NOT NULL,            -- checksummed address
    amount TEXT NOT NULL,           -- wei, decimal
    PRIMARY KEY (run_id, owner)
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    root BLOB,                      -- NULL: nothing was allocated this epoch
    allocated TEXT NOT NULL,        -- cumulative total of the tree (wei, decimal)
    claims_uri TEXT,
    report TEXT NOT NULL,           -- the epoch report (JSON)
    settled_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""


class LedgerError(ZooError):
    """The settlement ledger cannot be opened or written, or an epoch is committed twice."""


@dataclass(frozen=True)
class SettledEpoch:
    run_id: int
    epoch: int
    root: bytes | None
    allocated: int
    claims_uri: str | None
    report: dict[str, Any]


class SettlementLedger:
    """Durable settlement state of the runs a coordinator settles. One writer (the coordinator's settle loop)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"{self.path.parent}: cannot create the ledger's folder: {exc.strerror}") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(f"{self.path}: schema {version} is newer than this zoo-node's {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: cannot open the settlement ledger: {exc}") from None

    def close(self) -> None:
        self._db.close()

    # ---- reads
    def credited(self, run_id: int) -> dict[tuple[str, int, str], CreditedRound]:
        rows = self._db.execute("SELECT shard, round, worker, digest, epoch FROM credited WHERE run_id = ?", (run_id,))
        return {(s, r, w): CreditedRound(bytes(d), e) for s, r, w, d, e in rows}

    def cumulative(self, run_id: int) -> dict[str, int]:
        rows = self._db.execute("SELECT owner, amount FROM cumulative WHERE run_id = ?", (run_id,))
        return {owner: int(amount) for owner, amount in rows}

    def last_epoch(self, run_id: int) -> int:
        """The latest settled epoch of the run (0: none)."""
        row = self._db.execute("SELECT MAX(epoch) FROM epochs WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0] or 0)

    def epoch(self, run_id: int, epoch: int) -> SettledEpoch | None:
        row = self._db.execute(
            "SELECT root, allocated, claims_uri, report FROM epochs WHERE run_id = ? AND epoch = ?", (run_id, epoch)
        ).fetchone()
        if row is None:
            return None
        root, allocated, uri, report = row
        root = None if root is None else bytes(root)
        return SettledEpoch(run_id, epoch, root, int(allocated), uri, json.loads(report))

    def epochs(self, run_id: int) -> list[SettledEpoch]:
        rows = self._db.execute("SELECT epoch FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [e for (n,) in rows if (e := self.epoch(run_id, n)) is not None]

    # ---- the one write
    def commit_epoch(
        self,
        *,
        run_id: int,
        epoch: int,
        credits: list[tuple[str, int, str, bytes]],
        cumulative: dict[str, int],
        root: bytes | None,
        claims_uri: str | None,
        report: dict[str, Any],
    ) -> None:
        """Record a settled epoch atomically: its credited rounds, the new cumulative amounts, root and report."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if epoch <= self.last_epoch(run_id):
                    raise LedgerError(
                        f"run {run_id}: epoch {epoch} is not after the last settled epoch {self.last_epoch(run_id)}"
                    )
                self._db.executemany(
                    "INSERT INTO credited (run_id, shard, round, worker, digest, epoch) VALUES (?, ?, ?, ?, ?, ?)",
                    [(run_id, shard, rnd, worker, digest, epoch) for shard, rnd, worker, digest in credits],
                )
                self._db.executemany(
                    "INSERT INTO cumulative (run_id, owner, amount) VALUES (?, ?, ?) "
                    "ON CONFLICT (run_id, owner) DO UPDATE SET amount = excluded.amount",
                    [(run_id, owner, str(amount)) for owner, amount in cumulative.items()],
                )
                self._db.execute(
                    "INSERT INTO epochs (run_id, epoch, root, allocated, claims_uri, report, settled_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        epoch,
                        root,
                        str(sum(cumulative.values())),
                        claims_uri,
                        json.dumps(report, sort_keys=True),
                        time.time(),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise LedgerError(f"{self.path}: run {run_id} epoch {epoch}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: cannot commit run {run_id} epoch {epoch}: {exc}") from None

"""The coordinator's view of the run's nodes: who is alive, what each holds and reports, fed by heartbeats.

Unlike the node's membership view (zoo_node.control.membership) it judges liveness on the wall clock, because its
records outlive the process: after a restart every node is known (from the store) but counted gone until it is
heard again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from zoo_node.coordinator.store import NodeRecord


class NodeBook:
    """Nodes by control PeerID; `observe` on every accepted heartbeat, `sweep` periodically."""

    def __init__(
        self, timeout_s: float, records: Iterable[NodeRecord] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._nodes: dict[str, NodeRecord] = {r.peer_id: r for r in records}
        self._alive: set[str] = set()
        self._dirty: set[str] = set()

    def observe(
        self,
        peer_id: str,
        *,
        operator: str,
        shard: str,
        throughput: float,
        health: int,
        data_peer_id: str,
        version: str,
        multiaddrs: list[str],
        loss: float | None,
        mfu: float | None,
    ) -> str | None:
        """Record a heartbeat; returns "joined" (never seen) or "returned" (was gone), else None."""
        now = self._clock()
        record = self._nodes.get(peer_id)
        change = None
        if record is None:
            record = self._nodes[peer_id] = NodeRecord(peer_id, first_seen=now)
            change = "joined"
        elif peer_id not in self._alive:
            change = "returned"
        record.operator = operator
        record.shard = shard
        record.throughput = throughput
        record.health = health
        if data_peer_id:
            record.data_peer_id = data_peer_id
        record.version = version
        record.multiaddrs = list(multiaddrs)
        record.loss = loss
        record.mfu = mfu
        record.last_seen = now
        record.heartbeats += 1
        self._alive.add(peer_id)
        self._dirty.add(peer_id)
        return change

    def count_receipt(self, peer_id: str) -> None:
        record = self._nodes.get(peer_id)
        if record is None:  # a receipt before the node's first heartbeat
            record = self._nodes[peer_id] = NodeRecord(peer_id, first_seen=self._clock(), last_seen=self._clock())
        record.receipts += 1
        self._dirty.add(peer_id)

    def sweep(self) -> list[str]:
        """Mark nodes silent for `timeout_s` as gone; returns them."""
        now = self._clock()
        gone = [p for p in self._alive if now - self._nodes[p].last_seen >= self.timeout_s]
        self._alive.difference_update(gone)
        return sorted(gone)

    def is_alive(self, peer_id: str) -> bool:
        return peer_id in self._alive

    def get(self, peer_id: str) -> NodeRecord | None:
        return self._nodes.get(peer_id)

    def records(self) -> list[NodeRecord]:
        """Every node ever heard: alive first, then by PeerID."""
        return sorted(self._nodes.values(), key=lambda r: (r.peer_id not in self._alive, r.peer_id))

    def alive(self) -> list[NodeRecord]:
        return [r for r in self.records() if r.peer_id in self._alive]

    def counts(self) -> tuple[int, int]:
        """(alive, gone)."""
        return len(self._alive), len(self._nodes) - len(self._alive)

    def take_dirty(self) -> list[NodeRecord]:
        """Records changed since the last call (to be saved)."""
        dirty = [self._nodes[p] for p in sorted(self._dirty)]
        self._dirty.clear()
        return dirty

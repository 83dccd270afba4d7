"""Choosing a replica for each call (SWARM's rule) and banning the ones that fail.

Each call goes to the serving replica with the earliest expected finish: (its queued tokens + this call's tokens) /
its throughput moving average. A replica that fails or times out is banned until its DHT record expires (if it is
alive it re-announces and comes back after that); the call is then retried on another.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from zoo_node.errors import ZooError
from zoo_node.worker.records import ServerRecord

# Throughput assumed for a replica that has not measured any yet (tokens/s): optimistic, so new replicas get work.
DEFAULT_TOKENS_PER_S = 1e6


class NoReplica(ZooError):
    """No live, unbanned replica serves the shard."""


def expected_finish_s(record: ServerRecord, tokens: int, local_queue: int = 0) -> float:
    rate = record.tokens_per_s if record.tokens_per_s > 0 else DEFAULT_TOKENS_PER_S
    return (record.queued_tokens + local_queue + tokens) / rate


class Router:
    """Replica choice and bans for the shards one worker calls.

    `lookup(shard)` returns the shard's live records (from the DHT); results are cached for `refresh_s`.
    """

    def __init__(
        self, lookup: Callable[[str], list[ServerRecord]], *, refresh_s: float = 1.0, bans: bool = True
    ) -> None:
        self.lookup = lookup
        self.use_bans = bans  # False for a worker's own shards: there is no other replica to go to
        self.refresh_s = refresh_s
        self._cache: dict[str, tuple[float, list[ServerRecord]]] = {}
        self._banned: dict[tuple[str, str], float] = {}  # (shard, peer) -> until (monotonic)
        self._inflight: dict[tuple[str, str], int] = {}  # tokens this worker has sent and not yet got back
        self._lock = threading.Lock()
        self.bans = 0

    def replicas(self, shard: str, *, fresh: bool = False) -> list[ServerRecord]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(shard)
        if fresh or cached is None or now - cached[0] > self.refresh_s:
            records = [r for r in self.lookup(shard) if r.state == "serving"]
            with self._lock:
                self._cache[shard] = (now, records)
            return records
        return cached[1]

    def choose(self, shard: str, tokens: int, exclude: set[str] = frozenset()) -> ServerRecord:
        """The unbanned replica with the earliest expected finish (ties broken at random)."""
        now = time.monotonic()
        for fresh in (False, True):
            candidates = [
                r
                for r in self.replicas(shard, fresh=fresh)
                if r.peer not in exclude and self._banned.get((shard, r.peer), 0.0) <= now
            ]
            if candidates:
                with self._lock:
                    return min(
                        candidates,
                        key=lambda r: (
                            expected_finish_s(r, tokens, self._inflight.get((shard, r.peer), 0)),
                            random.random(),
                        ),
                    )
        raise NoReplica(f"no live replica serves {shard} (all absent, banned or tried)")

    def ban(self, shard: str, record: ServerRecord, longest_s: float = 60.0) -> None:
        """Ban a replica for this shard until its record expires (at least a second, at most `longest_s`)."""
        from hivemind.utils.timed_storage import get_dht_time

        if not self.use_bans:
            return
        left = min(longest_s, max(1.0, record.expires - get_dht_time()))
        with self._lock:
            self._banned[(shard, record.peer)] = time.monotonic() + left
            self.bans += 1

    def uncovered(self, shards: list[str]) -> list[str]:
        """The shards among `shards` that no live replica serves now."""
        return [s for s in shards if not self.replicas(s, fresh=True)]

    def is_banned(self, shard: str, peer: str) -> bool:
        return self._banned.get((shard, peer), 0.0) > time.monotonic()

    def started(self, shard: str, peer: str, tokens: int) -> None:
        with self._lock:
            self._inflight[(shard, peer)] = self._inflight.get((shard, peer), 0) + tokens

    def finished(self, shard: str, peer: str, tokens: int) -> None:
        with self._lock:
            self._inflight[(shard, peer)] = max(0, self._inflight.get((shard, peer), 0) - tokens)

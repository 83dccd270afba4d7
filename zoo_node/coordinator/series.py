"""Pure helpers for the run's figures: shard coverage from the nodes' heartbeats, and thinning a series to a
number of points for a client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ShardCoverage:
    shard: str
    replicas: tuple[str, ...]  # control PeerIDs of alive nodes holding it
    throughput: float

    @property
    def covered(self) -> bool:
        return bool(self.replicas)


@dataclass(frozen=True)
class AliveNode:
    """What coverage needs of one alive node."""

    peer_id: str
    shard: str
    throughput: float
    loss: float | None = None
    mfu: float | None = None


def shard_coverage(shards: Sequence[str], nodes: Iterable[AliveNode]) -> list[ShardCoverage]:
    """Replicas and throughput of every shard of the run, in the run's shard order.

    A node announcing a shard the run does not have is listed too (after the run's shards), so that a misconfigured
    node shows up instead of vanishing. A worker that holds several shards announces them comma-separated; each of
    them counts it as a replica, with its throughput split evenly among them.
    """
    replicas: dict[str, list[str]] = {s: [] for s in shards}
    throughput: dict[str, float] = dict.fromkeys(shards, 0.0)
    for node in nodes:
        held = held_shards(node.shard)
        for shard in held:
            replicas.setdefault(shard, []).append(node.peer_id)
            throughput[shard] = throughput.get(shard, 0.0) + max(node.throughput, 0.0) / len(held)
    return [ShardCoverage(s, tuple(sorted(r)), throughput[s]) for s, r in replicas.items()]


def held_shards(announced: str) -> list[str]:
    """The shards in a heartbeat's `shard` field ("" for none, "stage/0" or "stage/0,experts/0/1")."""
    return list(dict.fromkeys(part.strip() for part in announced.split(",") if part.strip()))


def coverage_fraction(shards: Sequence[str], coverage: Iterable[ShardCoverage]) -> float:
    """Fraction of the run's shards with at least one alive replica (0 for a run without shards)."""
    wanted = set(shards)
    if not wanted:
        return 0.0
    return sum(1 for c in coverage if c.shard in wanted and c.covered) / len(wanted)


def swarm_mean(nodes: Iterable[AliveNode], value: Callable[[AliveNode], float | None]) -> float | None:
    """Mean of a reported figure over the nodes that report it (None when none does)."""
    values = [v for n in nodes if (v := value(n)) is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def thin(points: Sequence[T], max_points: int) -> list[T]:
    """At most `max_points` of `points`, evenly spread, always keeping the last (the latest value)."""
    if max_points <= 0 or len(points) <= max_points:
        return list(points)
    if max_points == 1:
        return [points[-1]]
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]

"""Which shards a joining worker serves, and when it should move: Petals' rule on the announced throughputs.

A shard's coverage is the sum of its serving replicas' throughput (a replica that has not measured yet counts as
the median of those that have, or 1). A joining worker takes the shard of lowest coverage relative to the run's
need (every shard processes every token, so the need is equal and coverage alone decides; ties go to the shard
listed first). Picking several shards repeats the choice with this worker counted on the ones already picked.
A serving worker moves when the worst-covered shard is below `(1 - margin)` of its own shard's coverage without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median

from zoo_node.worker.records import ServerRecord


def _nominal(records: Mapping[str, Sequence[ServerRecord]]) -> float:
    measured = [r.tokens_per_s for rs in records.values() for r in rs if r.tokens_per_s > 0]
    return median(measured) if measured else 1.0


def coverage(records: Mapping[str, Sequence[ServerRecord]], exclude_peer: str | None = None) -> dict[str, float]:
    """Throughput serving each shard (every shard of `records` appears, uncovered ones with 0)."""
    nominal = _nominal(records)
    return {
        shard: sum(r.tokens_per_s if r.tokens_per_s > 0 else nominal for r in rs if r.peer != exclude_peer)
        for shard, rs in records.items()
    }


def choose_shards(
    records: Mapping[str, Sequence[ServerRecord]], count: int = 1, *, compatible: bool = True
) -> list[str]:
    """The `count` shards a joining worker should serve (distinct), lowest coverage first."""
    covered = coverage(records)
    nominal = _nominal(records)
    order = list(records)
    chosen: list[str] = []
    for _ in range(min(count, len(order))):
        candidates = [s for s in order if s not in chosen]
        if compatible:  # one pipeline stage per worker: its own stage calls are then always remote or local, not both
            has_stage = any(c.startswith("stage/") for c in chosen)
            candidates = [s for s in candidates if not (has_stage and s.startswith("stage/"))] or candidates
        best = min(candidates, key=lambda s: (covered[s], order.index(s)))
        chosen.append(best)
        covered[best] += nominal
    return chosen


def should_move(records: Mapping[str, Sequence[ServerRecord]], peer: str, current: str, margin: float) -> str | None:
    """The shard to move to, if the swarm is unbalanced beyond `margin`; None to stay."""
    without_me = coverage(records, exclude_peer=peer)
    if without_me.get(current, 0.0) <= 0:  # we are the last replica: moving would uncover our shard
        return None
    worst = min(records, key=lambda s: (without_me[s], list(records).index(s)))
    if worst != current and without_me[worst] < (1 - margin) * without_me[current]:
        return worst
    return None

"""Which shards a joining worker serves, and when it should move: Petals' rule on the announced records.

A shard's coverage is (its number of serving replicas, the sum of their throughput), compared in that order: a
shard one failure away from uncovered comes first, then the one of lowest throughput relative to the run's need
(every shard processes every token, so the need is equal and throughput alone decides; a replica that has not
measured yet counts as the median of those that have, or 1). Throughput alone would mislead: a stage's measured
service time includes its calls to remote expert groups. Ties go to the shard listed first. Picking several
shards repeats the choice with this worker counted on the ones already picked, at most one pipeline stage each.
A serving worker moves when the worst-covered shard has fewer replicas than its own would have without it, or as
many with a throughput below `(1 - margin)` of it; never away from a shard it alone serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median

from zoo_node.worker.records import ServerRecord

Coverage = tuple[int, float]


def _nominal(records: Mapping[str, Sequence[ServerRecord]]) -> float:
    measured = [r.tokens_per_s for rs in records.values() for r in rs if r.tokens_per_s > 0]
    return median(measured) if measured else 1.0


def coverage(records: Mapping[str, Sequence[ServerRecord]], exclude_peer: str | None = None) -> dict[str, Coverage]:
    """(replicas, throughput) serving each shard (every shard of `records` appears, uncovered ones with (0, 0))."""
    nominal = _nominal(records)
    out = {}
    for shard, rs in records.items():
        live = [r for r in rs if r.peer != exclude_peer]
        out[shard] = (len(live), sum(r.tokens_per_s if r.tokens_per_s > 0 else nominal for r in live))
    return out


def choose_shards(records: Mapping[str, Sequence[ServerRecord]], count: int = 1) -> list[str]:
    """The `count` shards a joining worker should serve (distinct), least covered first."""
    covered = coverage(records)
    nominal = _nominal(records)
    order = list(records)
    chosen: list[str] = []
    for _ in range(min(count, len(order))):
        candidates = [s for s in order if s not in chosen]
        # One pipeline stage per worker: a second stage would double its share of every micro-batch.
        if any(c.startswith("stage/") for c in chosen):
            candidates = [s for s in candidates if not s.startswith("stage/")] or candidates
        best = min(candidates, key=lambda s: (covered[s], order.index(s)))
        chosen.append(best)
        replicas, throughput = covered[best]
        covered[best] = (replicas + 1, throughput + nominal)
    return chosen


def should_move(records: Mapping[str, Sequence[ServerRecord]], peer: str, current: str, margin: float) -> str | None:
    """The shard to move to, if the swarm is unbalanced beyond `margin`; None to stay."""
    without_me = coverage(records, exclude_peer=peer)
    mine = without_me.get(current, (0, 0.0))
    if mine[0] == 0:  # we are the last replica: moving would uncover our shard
        return None
    order = list(records)
    worst = min(order, key=lambda s: (without_me[s], order.index(s)))
    if worst == current:
        return None
    replicas, throughput = without_me[worst]
    if replicas < mine[0] or (replicas == mine[0] and throughput < (1 - margin) * mine[1]):
        return worst
    return None

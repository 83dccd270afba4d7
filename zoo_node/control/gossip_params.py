"""Gossipsub parameters sized for a run's message rates.

py-libp2p's gossipsub drops, silently, anything above `max_messages_per_topic_per_second` (10 by default) per
forwarding peer and topic, and counts our own publications against the same limit. A mesh neighbour forwards the
heartbeats of the whole run, so the limit must grow with the number of nodes: a run of 847 nodes heartbeating every
5 s sends 170 heartbeats a second through every neighbour, and the default would drop 94% of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Bursts: heartbeats are not evenly spread, and a node re-announces its backlog of receipts after a restart.
BURST_FACTOR = 3.0
# A node announces at most this many receipts a second (one per averaging round; rounds take many seconds).
RECEIPTS_PER_NODE_PER_S = 0.2
MIN_RATE_LIMIT = 10.0


@dataclass(frozen=True)
class GossipParams:
    """The gossipsub router's settings (go-libp2p's defaults for the mesh, a 1 s router heartbeat)."""

    degree: int = 6
    degree_low: int = 5
    degree_high: int = 12
    router_heartbeat_s: int = 1
    gossip_window: int = 3
    gossip_history: int = 5
    seen_ttl_s: int = 120
    rate_limit_per_topic: float = MIN_RATE_LIMIT


def rate_limit_per_topic(nodes: int, heartbeat_interval_s: float) -> float:
    """Messages per second one peer may forward on one topic without being dropped, for a run of `nodes` nodes."""
    nodes = max(nodes, 1)
    heartbeats = nodes / heartbeat_interval_s
    receipts = nodes * RECEIPTS_PER_NODE_PER_S
    return max(MIN_RATE_LIMIT, math.ceil(BURST_FACTOR * max(heartbeats, receipts)))


def own_publish_budget(rate_limit: float) -> float:
    """How many messages a second this node itself may publish on one topic (half the limit, to leave headroom)."""
    return rate_limit / 2

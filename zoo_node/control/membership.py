"""The membership view: which nodes of the run are alive, what they serve, and when each was last heard.

Fed only with heartbeats that passed the guard. Liveness is judged on this node's own monotonic clock (when a
heartbeat arrived), never on the sender's timestamps. A node silent for `timeout_s` is marked gone; it stays in
the view (so `status` can show it) until `forget_after_s` and comes back alive with its next heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zoo_node.proto import gossip_pb2, worker_pb2


@dataclass
class Member:
    """What the view knows of one node."""

    peer_id: str
    operator: str = ""
    shard: str = ""
    throughput: float = 0.0
    health: int = worker_pb2.HEALTH_UNSPECIFIED
    data_peer_id: str = ""
    version: str = ""
    multiaddrs: list[str] = field(default_factory=list)
    data_multiaddrs: list[str] = field(default_factory=list)
    first_seen: float = 0.0
    last_seen: float = 0.0
    alive: bool = True


class MembershipView:
    """Alive/gone bookkeeping of the run's nodes (not including this one)."""

    def __init__(
        self,
        self_peer_id: str,
        timeout_s: float,
        *,
        forget_after_s: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.self_peer_id = self_peer_id
        self.timeout_s = timeout_s
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._members: dict[str, Member] = {}

    def observe(
        self,
        origin: str,
        heartbeat: gossip_pb2.Heartbeat,
        binding: gossip_pb2.WorkerBinding | None,
    ) -> str | None:
        """Record a heartbeat; returns "joined" or "returned" when the node was unknown or gone, else None."""
        if origin == self.self_peer_id:
            return None
        now = self._clock()
        member = self._members.get(origin)
        change = None
        if member is None:
            member = self._members[origin] = Member(peer_id=origin, first_seen=now)
            change = "joined"
        elif not member.alive:
            change = "returned"
        member.operator = heartbeat.operator
        member.shard = heartbeat.shard
        member.throughput = heartbeat.throughput
        member.health = heartbeat.health
        member.data_peer_id = binding.data_peer_id if binding is not None else ""
        member.version = heartbeat.version
        member.multiaddrs = list(heartbeat.multiaddrs)
        member.data_multiaddrs = list(heartbeat.data_multiaddrs)
        member.last_seen = now
        member.alive = True
        return change

    def sweep(self) -> list[str]:
        """Mark nodes silent for `timeout_s` as gone (returns them); forget those gone for `forget_after_s`."""
        now = self._clock()
        gone = []
        for peer_id, member in list(self._members.items()):
            silent = now - member.last_seen
            if member.alive and silent >= self.timeout_s:
                member.alive = False
                gone.append(peer_id)
            elif not member.alive and silent >= self.forget_after_s:
                del self._members[peer_id]
        return gone

    def forget(self, peer_id: str) -> None:
        """Drop a node from the view (it left the registry)."""
        self._members.pop(peer_id, None)

    def get(self, peer_id: str) -> Member | None:
        return self._members.get(peer_id)

    def members(self) -> list[Member]:
        """Every node in the view, alive first, then by PeerID."""
        return sorted(self._members.values(), key=lambda m: (not m.alive, m.peer_id))

    def alive(self) -> list[Member]:
        return [m for m in self.members() if m.alive]

    def last_seen_age(self, member: Member) -> float:
        return self._clock() - member.last_seen

    def counts(self) -> tuple[int, int]:
        """(alive, gone)."""
        alive = sum(1 for m in self._members.values() if m.alive)
        return alive, len(self._members) - alive

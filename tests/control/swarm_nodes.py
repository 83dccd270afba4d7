"""In-process guarded swarm nodes for tests: real py-libp2p hosts (each in its own trio thread) behind the guard."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zoo_node.control.guard import Accepted, GossipGuard
from zoo_node.control.membership import MembershipView
from zoo_node.control.messages import ControlKey, MonotonicMillis, encode_envelope, sign_worker_binding
from zoo_node.control.swarm import SwarmSettings
from zoo_node.control.swarm_thread import SwarmThread
from zoo_node.control.topics import RunTopics
from zoo_node.proto import gossip_pb2, worker_pb2

RUN_ID = 7
OPERATOR = "0x" + "ab" * 20


@dataclass
class Node:
    key: ControlKey
    guard: GossipGuard
    thread: SwarmThread
    membership: MembershipView
    accepted: list[Accepted] = field(default_factory=list)
    clock: MonotonicMillis = field(default_factory=MonotonicMillis)

    @property
    def peer_id(self) -> str:
        return self.key.peer_id

    @property
    def addr(self) -> str:
        return self.thread.listen_multiaddrs[0]

    def on_accept(self, accepted: Accepted) -> None:
        self.accepted.append(accepted)
        if accepted.kind == "heartbeat":
            self.membership.observe(accepted.origin, accepted.envelope.heartbeat, accepted.binding)

    def heartbeat_envelope(self, *, sent_at_ms: int | None = None, run_id: int = RUN_ID) -> bytes:
        heartbeat = gossip_pb2.Heartbeat(operator=OPERATOR, shard="stage/0", health=worker_pb2.HEALTH_SERVING)
        heartbeat.worker.CopyFrom(sign_worker_binding(self.key, run_id, self.key.peer_id))
        return encode_envelope(self.peer_id, run_id, sent_at_ms or self.clock(), heartbeat=heartbeat)

    async def heartbeat(self) -> None:
        await self.thread.publish(RunTopics(RUN_ID).heartbeat, self.heartbeat_envelope())


async def start_node(registered: Iterable[str] = (), *, timeout_s: float = 10.0) -> Node:
    key = ControlKey.from_seed(os.urandom(32))
    topics = RunTopics(RUN_ID)
    # A short replay window, so that the replay test need not wait for a heartbeat to get old.
    guard = GossipGuard(topics, max_message_bytes=64 * 1024, max_age_s=120, replay_window_s=0.5)
    guard.set_registered([key.peer_id, *registered])
    node_ref: list[Node] = []
    thread = SwarmThread(
        SwarmSettings(key.private.private_bytes_raw(), ["/ip4/127.0.0.1/tcp/0"], topics.all()),
        guard,
        lambda accepted: node_ref[0].on_accept(accepted),
    )
    node = Node(key, guard, thread, MembershipView(key.peer_id, timeout_s))
    node_ref.append(node)
    await thread.start()
    return node


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll `condition` until true; returns the seconds it took. AssertionError naming `what` at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def wait_meshed(nodes: list[Node], timeout_s: float = 15.0) -> None:
    """Heartbeat until every node has accepted a heartbeat from every other."""

    def everyone_heard() -> bool:
        return all({a.origin for a in n.accepted} >= {m.peer_id for m in nodes if m is not n} for n in nodes)

    start = time.monotonic()
    while not everyone_heard():
        if time.monotonic() - start > timeout_s:
            raise AssertionError("the nodes did not hear each other")
        for node in nodes:
            await node.heartbeat()
        await asyncio.sleep(0.5)  # 2 heartbeats/s per node: well within the rate limit of 10 per forwarder

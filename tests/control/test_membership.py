"""The membership view: joined, gone after the timeout (on the local clock), back with the next heartbeat."""

from __future__ import annotations

from zoo_node.control.membership import MembershipView
from zoo_node.proto import gossip_pb2, worker_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_alive_gone_and_back() -> None:
    clock = Clock()
    view = MembershipView("me", timeout_s=10, forget_after_s=100, clock=clock)
    beat = gossip_pb2.Heartbeat(
        operator="0x" + "aa" * 20, shard="stage/1", throughput=5.0, health=worker_pb2.HEALTH_SERVING
    )
    binding = gossip_pb2.WorkerBinding(data_peer_id="data-a")
    assert view.observe("a", beat, binding) == "joined"
    assert view.observe("me", beat, None) is None  # never itself
    clock.now += 9.9
    assert view.sweep() == [] and view.counts() == (1, 0)
    member = view.get("a")
    assert member is not None and (member.shard, member.data_peer_id, member.throughput) == ("stage/1", "data-a", 5.0)
    clock.now += 0.2
    assert view.sweep() == ["a"] and view.counts() == (0, 1)
    assert view.sweep() == []  # reported gone once
    assert view.observe("a", beat, binding) == "returned"
    assert view.counts() == (1, 0) and view.observe("a", beat, binding) is None
    clock.now += 10
    view.sweep()
    clock.now += 100
    view.sweep()
    assert view.get("a") is None  # forgotten long after it went


def test_members_are_listed_alive_first() -> None:
    clock = Clock()
    view = MembershipView("me", timeout_s=5, clock=clock)
    beat = gossip_pb2.Heartbeat(operator="0x" + "aa" * 20)
    view.observe("z", beat, None)
    clock.now += 6
    view.observe("b", beat, None)
    view.sweep()
    assert [(m.peer_id, m.alive) for m in view.members()] == [("b", True), ("z", False)]

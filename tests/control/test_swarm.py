"""The run's gossip between real py-libp2p hosts: delivery, and every kind of forgery dropped and counted."""

from __future__ import annotations

import asyncio

from tests.control.forger import Forger
from tests.control.swarm_nodes import RUN_ID, start_node, wait_for, wait_meshed
from zoo_node.control.messages import ControlKey, encode_envelope, peer_id_bytes, sign_worker_binding
from zoo_node.control.topics import RunTopics
from zoo_node.proto import gossip_pb2

TOPICS = RunTopics(RUN_ID)


def test_heartbeats_reach_every_node_of_a_line_topology() -> None:
    """a - b - c: c hears a only through b's forwarding; nothing is dropped."""

    async def scenario() -> None:
        a = await start_node()
        b = await start_node()
        c = await start_node()
        nodes = [a, b, c]
        try:
            for node in nodes:
                node.guard.set_registered(n.peer_id for n in nodes)
            await b.thread.dial(a.addr)
            await c.thread.dial(b.addr)
            assert a.peer_id not in await c.thread.connected_peers()
            await wait_meshed(nodes)
            member = c.membership.get(a.peer_id)
            assert member is not None and member.alive and member.data_peer_id == a.peer_id
            for node in nodes:
                dropped = {k: v for k, v in node.guard.counters.snapshot().items() if v}
                assert dropped == {}
        finally:
            await asyncio.gather(*(n.thread.stop() for n in nodes))

    asyncio.run(scenario())


def test_forgeries_are_dropped_counted_and_never_reach_the_membership_view() -> None:
    async def scenario() -> None:
        a = await start_node()
        b = await start_node()
        forger = Forger().start(list(TOPICS.all()))
        try:
            a.guard.set_registered([a.peer_id, b.peer_id])
            b.guard.set_registered([a.peer_id, b.peer_id])
            await b.thread.dial(a.addr)
            forger.dial(a.addr)
            forger.dial(b.addr)
            await wait_meshed([a, b])
            b_id = peer_id_bytes(b.peer_id)
            await wait_for(lambda: any(m.from_id == b_id for m in forger.captured), 10, "a captured heartbeat of b")
            counters = a.guard.counters

            # 1. A valid signature by an unregistered key.
            envelope = encode_envelope(
                forger.peer_id, RUN_ID, b.clock(), heartbeat=gossip_pb2.Heartbeat(operator="0x" + "11" * 20)
            )
            forger.publish(TOPICS.heartbeat, envelope)
            await wait_for(lambda: counters.snapshot()["unregistered"] == 1, 10, "the unregistered drop")

            # 2. A registered PeerID (b) with a bad signature (made with the forger's key).
            forged = forger.message(TOPICS.heartbeat, b.heartbeat_envelope(), from_peer=b.peer_id)
            forger.inject(forged)
            await wait_for(lambda: counters.snapshot()["bad_signature"] == 1, 10, "the bad-signature drop")

            # 3. A replay of an old heartbeat of b, after a newer one was accepted.
            b_id = peer_id_bytes(b.peer_id)
            old = next(m for m in forger.captured if m.from_id == b_id and m.topicIDs[0] == TOPICS.heartbeat)
            old_sent = gossip_pb2.GossipEnvelope.FromString(old.data).sent_at_ms
            await b.heartbeat()
            await wait_for(
                lambda: a.membership.get(b.peer_id) is not None and a.accepted[-1].envelope.sent_at_ms > old_sent,
                10,
                "a newer heartbeat of b",
            )
            accepted_before = len(a.accepted)
            await asyncio.sleep(0.6)  # older than the guard's replay window: not a late copy any more
            forger.inject(old)
            await wait_for(lambda: counters.snapshot()["replay"] >= 1, 10, "the replay drop")

            # Now let the forger register, and try what a registered but dishonest node could.
            a.guard.set_registered([a.peer_id, b.peer_id, forger.peer_id])
            someone = ControlKey.from_seed(b"\x01" * 32)
            # 4. An envelope naming b, signed (validly) by the forger.
            forger.publish(TOPICS.heartbeat, b.heartbeat_envelope())
            await wait_for(lambda: counters.snapshot()["wrong_signer"] == 1, 10, "the wrong-signer drop")
            # 5. Its own envelope with a worker binding signed by another key.
            heartbeat = gossip_pb2.Heartbeat(operator="0x" + "22" * 20)
            binding = sign_worker_binding(someone, RUN_ID, "12D3KooWdata")
            binding.binding = gossip_pb2.WorkerBinding(
                run_id=RUN_ID, control_peer_id=forger.peer_id, data_peer_id="12D3KooWdata", issued_at_ms=1
            ).SerializeToString()
            heartbeat.worker.CopyFrom(binding)
            forger.publish(TOPICS.heartbeat, encode_envelope(forger.peer_id, RUN_ID, b.clock(), heartbeat=heartbeat))
            await wait_for(lambda: counters.snapshot()["bad_signature"] == 2, 10, "the bad binding drop")
            # 6. Oversized, 7. malformed, 8. about another run.
            forger.publish(TOPICS.heartbeat, b"\x00" * (64 * 1024 + 1))
            forger.publish(TOPICS.heartbeat, b"not a protobuf \xff\xff")
            other_run = gossip_pb2.Heartbeat(operator="0x" + "22" * 20)
            forger.publish(
                TOPICS.heartbeat, encode_envelope(forger.peer_id, RUN_ID + 1, b.clock(), heartbeat=other_run)
            )
            await wait_for(
                lambda: (
                    (
                        counters.snapshot()["oversized"],
                        counters.snapshot()["malformed"],
                        counters.snapshot()["wrong_run"],
                    )
                    == (1, 1, 1)
                ),
                10,
                "the oversized, malformed and wrong-run drops",
            )
            assert a.membership.get(forger.peer_id) is None
            assert all(acc.origin != forger.peer_id for acc in a.accepted)
            assert all(acc.envelope.sent_at_ms != old_sent for acc in a.accepted[accepted_before:])
            # The forgeries were not forwarded to b either (b only ever saw the unregistered one, from the forger).
            assert all(acc.origin != forger.peer_id for acc in b.accepted)
        finally:
            forger.stop()
            await asyncio.gather(a.thread.stop(), b.thread.stop())

    asyncio.run(scenario())


def test_a_flood_beyond_the_rate_limit_is_counted() -> None:
    async def scenario() -> None:
        a = await start_node()
        forger = Forger().start(list(TOPICS.all()))
        try:
            a.guard.set_registered([a.peer_id, forger.peer_id])
            forger.dial(a.addr)
            await wait_for(lambda: bool(forger.pubsub.peer_topics.get(TOPICS.heartbeat)), 10, "a's subscription")
            clock = a.clock
            for _ in range(40):
                data = encode_envelope(
                    forger.peer_id, RUN_ID, clock(), heartbeat=gossip_pb2.Heartbeat(operator="0x" + "33" * 20)
                )
                forger.publish(TOPICS.heartbeat, data)
            await wait_for(lambda: a.guard.counters.snapshot()["rate_limited"] > 0, 10, "rate-limited drops")
        finally:
            forger.stop()
            await a.thread.stop()

    asyncio.run(scenario())

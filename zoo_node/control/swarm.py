"""The run's py-libp2p host (trio): TCP, Noise, yamux, identify, ping, and gossipsub with strict signing.

Inbound messages go through `GossipGuard` before pubsub forwards or delivers them: `GuardedPubsub` screens each
message in `push_msg` and hands accepted ones straight to a callback (no subscription queue, so nothing is lost to
py-libp2p's 32-message queue). `CountingGossipSub` counts what the router's spam protection drops.

Everything here runs inside one trio run; `zoo_node.control.swarm_thread` hosts it in a thread for the asyncio
supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import signature_validator
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from zoo_node.control.gossip_params import GossipParams
from zoo_node.control.guard import Accepted, DropCounters, Dropped, GossipGuard

logger = logging.getLogger(__name__)


class DialError(Exception):
    """A peer could not be dialled (bad address, refused, timeout)."""


@dataclass(frozen=True)
class SwarmSettings:
    """What the host needs: its key, where to listen, the run's topics and the router's parameters."""

    seed: bytes
    listen_multiaddrs: Sequence[str]
    topics: Sequence[str]
    params: GossipParams = field(default_factory=GossipParams)
    dial_timeout_s: float = 10.0


class CountingGossipSub(GossipSub):
    """GossipSub that counts the messages its spam protection drops (py-libp2p only logs them), and floods this
    node's own messages to every peer subscribed to the topic (go-libp2p's default "flood publish").

    Without flooding, py-libp2p sends a message only to the topic's mesh, which is empty until the next router
    heartbeat grafts a newcomer, and stays empty for a minute after a PRUNE backoff: a rare message (a receipt)
    published then reaches no one except by later IHAVE gossip.
    """

    def __init__(self, *args, counters: DropCounters, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._drop_counters = counters

    def _get_peers_to_send(self, topic_ids, msg_forwarder: ID, origin: ID, msg_id: bytes | None = None):
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        if self.pubsub is not None and origin == self.pubsub.my_id and msg_forwarder == origin:
            for topic in topic_ids:
                peers.update(self.pubsub.peer_topics.get(topic, ()))
            peers.discard(origin)
        yield from peers

    def _check_spam_protection(self, peer_id: ID, msg: rpc_pb2.Message) -> bool:
        allowed = super()._check_spam_protection(peer_id, msg)
        if not allowed:
            self._drop_counters.add("rate_limited")
        return allowed


class GuardedPubsub(Pubsub):
    """Pubsub whose inbound messages pass a `GossipGuard` and reach `on_accept` directly."""

    def __init__(self, host, router, *, guard: GossipGuard, on_accept: Callable[[Accepted], None], **kwargs) -> None:
        super().__init__(host, router, strict_signing=True, **kwargs)
        self._guard = guard
        self._on_accept = on_accept
        # Accepted messages between the guard and `notify_subscriptions`, keyed by message id.
        self._accepted: dict[bytes, Accepted] = {}

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        origin_id = ID(msg.from_id)
        if origin_id == self.my_id or self.is_peer_blacklisted(msg_forwarder):
            await super().push_msg(msg_forwarder, msg)
            return
        try:
            origin = origin_id.to_base58()
        except Exception:  # not a multihash at all
            self._guard.counters.add("malformed")
            return
        if self._guard.precheck(origin, msg.topicIDs, msg.data) is not None:
            self._penalize(msg_forwarder, msg)
            return
        if self._is_msg_seen(msg):
            return  # gossip redundancy: pubsub would drop it too
        verdict = self._guard.screen(origin, msg.topicIDs, msg.data, signature_validator(msg))
        if isinstance(verdict, Dropped):
            logger.debug(
                "dropped gossip from %s (via %s): %s: %s", origin, msg_forwarder, verdict.reason, verdict.detail
            )
            if verdict.attributable:
                # Validly signed by its origin: safe to remember, so that copies are neither re-checked nor recounted.
                # (A message with a bad signature must not be: it could pre-empt the real one's id.)
                self._mark_msg_seen(msg)
            self._penalize(msg_forwarder, msg)
            return
        msg_id = self._msg_id_constructor(msg)
        self._accepted[msg_id] = verdict
        try:
            await super().push_msg(msg_forwarder, msg)
        finally:
            self._accepted.pop(msg_id, None)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        accepted = self._accepted.pop(self._msg_id_constructor(publish_message), None)
        if accepted is not None:
            self._on_accept(accepted)

    def _penalize(self, forwarder: ID, msg: rpc_pb2.Message) -> None:
        scorer = getattr(self.router, "scorer", None)
        if scorer is None:
            return
        for topic in msg.topicIDs:
            try:
                scorer.on_invalid_message(forwarder, topic)
            except Exception:  # scoring is advisory; never let it break delivery
                logger.debug("peer scoring failed", exc_info=True)


class Swarm:
    """A running host with its pubsub, as seen from inside the trio run."""

    def __init__(self, host, pubsub: GuardedPubsub, router: CountingGossipSub, dial_timeout_s: float) -> None:
        self.host = host
        self.pubsub = pubsub
        self.router = router
        self.dial_timeout_s = dial_timeout_s

    @property
    def peer_id(self) -> str:
        return self.host.get_id().to_base58()

    def listen_multiaddrs(self) -> list[str]:
        """Where this host listens, each ending in /p2p/<PeerID> (the form other nodes dial)."""
        suffix = f"/p2p/{self.peer_id}"
        addrs = []
        for addr in self.host.get_addrs():
            text = str(addr)
            addrs.append(text if text.endswith(suffix) else text + suffix)
        return addrs

    async def publish(self, topic: str, data: bytes) -> None:
        await self.pubsub.publish(topic, data)

    async def dial(self, addr: str) -> str:
        """Connect to a multiaddr ending in /p2p/<PeerID>; returns the PeerID. Raises DialError."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise DialError(f"{addr}: not a dialable multiaddr with /p2p/: {exc}") from None
        if info.peer_id == self.host.get_id():
            raise DialError(f"{addr}: is this node")
        with trio.move_on_after(self.dial_timeout_s) as scope:
            try:
                await self.host.connect(info)
            except Exception as exc:
                raise DialError(f"{addr}: {exc}") from None
        if scope.cancelled_caught:
            raise DialError(f"{addr}: no connection within {self.dial_timeout_s:.0f} s")
        return info.peer_id.to_base58()

    def connected_peers(self) -> set[str]:
        return {peer.to_base58() for peer in self.host.get_connected_peers()}

    def set_rate_limit(self, per_topic: float) -> None:
        self.router.max_messages_per_topic_per_second = per_topic


def _make_host(seed: bytes):
    key_pair = create_new_key_pair(seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(key_pair=key_pair, sec_opt={NOISE_PROTOCOL_ID: noise}, muxer_preference="YAMUX")


@asynccontextmanager
async def open_swarm(
    settings: SwarmSettings, guard: GossipGuard, on_accept: Callable[[Accepted], None]
) -> AsyncIterator[Swarm]:
    """Start the host, listen, subscribe to the run's topics; stop everything on exit."""
    params = settings.params
    host = _make_host(settings.seed)
    router = CountingGossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
        degree=params.degree,
        degree_low=params.degree_low,
        degree_high=params.degree_high,
        heartbeat_interval=params.router_heartbeat_s,
        heartbeat_initial_delay=0.1,
        gossip_window=params.gossip_window,
        gossip_history=params.gossip_history,
        max_messages_per_topic_per_second=params.rate_limit_per_topic,
        counters=guard.counters,
    )
    pubsub = GuardedPubsub(host, router, guard=guard, on_accept=on_accept, seen_ttl=params.seen_ttl_s)
    listen = [multiaddr.Multiaddr(addr) for addr in settings.listen_multiaddrs]
    async with host.run(listen_addrs=listen), background_trio_service(pubsub), background_trio_service(router):
        await pubsub.wait_until_ready()
        for topic in settings.topics:
            await pubsub.subscribe(topic)
        yield Swarm(host, pubsub, router, settings.dial_timeout_s)

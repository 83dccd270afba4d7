"""A hostile libp2p peer for the forgery tests: a plain py-libp2p gossipsub host (no guard) in a trio thread that
can publish raw, hand-made pubsub messages: valid ones signed by its own key, ones claiming another PeerID, replays.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service

from zoo_node.control.messages import peer_id_bytes


class Forger:
    """A raw gossipsub peer; every method blocks until done in its trio thread."""

    def __init__(self, seed: bytes | None = None) -> None:
        self.key_pair = create_new_key_pair(seed or os.urandom(32))
        self.captured: list[rpc_pb2.Message] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.topics: list[str] = []

    @property
    def peer_id(self) -> str:
        return self.host.get_id().to_base58()

    def start(self, topics: list[str]) -> Forger:
        self.topics = topics
        self._thread.start()
        assert self._ready.wait(30), "the forger's host did not start"
        return self

    async def _capture(self, subscription) -> None:
        while True:
            self.captured.append(await subscription.get())

    async def _main(self) -> None:
        self.host = new_host(key_pair=self.key_pair, muxer_preference="YAMUX")
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,
            spam_protection_enabled=False,
        )
        self.pubsub = Pubsub(self.host, self.router, strict_signing=True)
        self._stop = trio.Event()
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with (
            self.host.run(listen),
            background_trio_service(self.pubsub),
            background_trio_service(self.router),
        ):
            await self.pubsub.wait_until_ready()
            async with trio.open_nursery() as nursery:
                for topic in self.topics:
                    nursery.start_soon(self._capture, await self.pubsub.subscribe(topic))
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def dial(self, addr: str) -> None:
        self.run(self.host.connect, info_from_p2p_addr(multiaddr.Multiaddr(addr)))

    def publish(self, topic: str, data: bytes) -> None:
        """A normal publication, signed by this forger's own (valid) key."""
        self.run(self.pubsub.publish, topic, data)

    def message(
        self, topic: str, data: bytes, *, from_peer: str | None = None, seqno: int | None = None, sign: bool = True
    ) -> rpc_pb2.Message:
        """A hand-made pubsub message claiming `from_peer` (default: this forger), signed by this forger's key."""
        msg = rpc_pb2.Message(
            data=data,
            topicIDs=[topic],
            from_id=peer_id_bytes(from_peer) if from_peer else self.host.get_id().to_bytes(),
            seqno=(seqno if seqno is not None else int.from_bytes(os.urandom(7), "big")).to_bytes(8, "big"),
        )
        if sign:
            msg.signature = self.key_pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        return msg

    def inject(self, msg: rpc_pb2.Message) -> None:
        """Send a raw message to every peer subscribed to its topic, bypassing this host's own checks."""

        async def send() -> None:
            rpc = rpc_pb2.RPC(publish=[msg])
            for peer_id in list(self.pubsub.peers):
                queue = self.pubsub.peer_queues.get(peer_id)
                if queue is not None:
                    queue.push(rpc)

        self.run(send)

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            self._token.run_sync_soon(self._stop.set)
        self._thread.join(10)

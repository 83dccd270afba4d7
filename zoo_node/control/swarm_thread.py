"""Hosts the trio-only py-libp2p swarm in its own thread and exposes it to the asyncio supervisor.

Concurrency model of the supervisor: asyncio owns the process (gRPC aio servers, the worker subprocess, signals,
timers); py-libp2p needs trio, so it gets one thread running `trio.run`. Calls from asyncio into trio are scheduled
with `TrioToken.run_sync_soon` (never blocks the event loop) and answered through an asyncio future set with
`call_soon_threadsafe`; accepted gossip flows the other way through `call_soon_threadsafe` too. No state is shared
between the two threads except the guard's registered set (an atomically swapped frozenset) and its thread-safe
drop counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from zoo_node.control.guard import Accepted, GossipGuard
from zoo_node.control.swarm import Swarm, SwarmSettings, open_swarm

logger = logging.getLogger(__name__)
T = TypeVar("T")


class SwarmStopped(RuntimeError):
    """The swarm thread is not running (not started, failed, or stopped)."""


def _set_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class SwarmThread:
    """The swarm in a thread; every public method is called from the asyncio loop."""

    def __init__(
        self,
        settings: SwarmSettings,
        guard: GossipGuard,
        on_accept: Callable[[Accepted], None],
        *,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self._on_accept = on_accept
        self.stop_timeout_s = stop_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._done = threading.Event()
        self.swarm: Swarm | None = None
        self.peer_id = ""
        self.listen_multiaddrs: list[str] = []

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the thread; returns once the host listens and has joined the topics."""
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="zoo-swarm", daemon=True)
        self._thread.start()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(ready)
        except TimeoutError:
            await self.stop()
            raise SwarmStopped(f"the libp2p host did not start within {timeout_s:.0f} s") from None

    def _deliver(self, accepted: Accepted) -> None:
        # Runs in the trio thread, inside pubsub: hand over and return at once.
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            self._loop.call_soon_threadsafe(self._on_accept, accepted)

    def _thread_main(self, ready: asyncio.Future) -> None:
        assert self._loop is not None
        try:
            trio.run(self._trio_main, ready)
        except BaseException as exc:
            if self._stop is not None and self._stop.is_set():
                # py-libp2p can trip over a message that arrives while its services close; we are stopping anyway.
                logger.debug("error while the libp2p host stopped: %s", exc, exc_info=True)
            else:
                logger.error("the libp2p host stopped: %s", exc, exc_info=not isinstance(exc, OSError))
            self._loop.call_soon_threadsafe(_set_exception, ready, SwarmStopped(f"the libp2p host failed: {exc}"))
        finally:
            self._token = None
            self._done.set()

    async def _trio_main(self, ready: asyncio.Future) -> None:
        assert self._loop is not None
        self._stop = trio.Event()
        async with open_swarm(self.settings, self.guard, self._deliver) as swarm, trio.open_nursery() as nursery:
            self.swarm = swarm
            self.peer_id = swarm.peer_id
            self.listen_multiaddrs = swarm.listen_multiaddrs()
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._loop.call_soon_threadsafe(_set_result, ready, None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> asyncio.Future[T]:
        """Run `await fn(*args)` in the trio thread; the returned asyncio future gets its result or exception."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        token, nursery = self._token, self._nursery
        if token is None or nursery is None:
            fut.set_exception(SwarmStopped("the libp2p host is not running"))
            return fut

        async def runner() -> None:
            try:
                result = await fn(*args)
            except Exception as exc:
                loop.call_soon_threadsafe(_set_exception, fut, exc)
            else:
                loop.call_soon_threadsafe(_set_result, fut, result)

        try:
            token.run_sync_soon(nursery.start_soon, runner)
        except trio.RunFinishedError:
            fut.set_exception(SwarmStopped("the libp2p host is not running"))
        return fut

    def _require(self) -> Swarm:
        if self.swarm is None or self._token is None:
            raise SwarmStopped("the libp2p host is not running")
        return self.swarm

    async def publish(self, topic: str, data: bytes) -> None:
        await self.call(self._require().publish, topic, data)

    async def dial(self, addr: str) -> str:
        return await self.call(self._require().dial, addr)

    async def connected_peers(self) -> set[str]:
        swarm = self._require()

        async def peers() -> set[str]:
            return swarm.connected_peers()

        return await self.call(peers)

    async def topic_peers(self, topic: str) -> set[str]:
        """Peers that told us they subscribe to `topic` (who would hear a message published there)."""
        swarm = self._require()

        async def peers() -> set[str]:
            return {peer.to_base58() for peer in swarm.pubsub.peer_topics.get(topic, ())}

        return await self.call(peers)

    async def set_rate_limit(self, per_topic: float) -> None:
        swarm = self._require()

        async def apply() -> None:
            swarm.set_rate_limit(per_topic)

        await self.call(apply)

    @property
    def running(self) -> bool:
        return self._token is not None and not self._done.is_set()

    async def stop(self) -> None:
        """Close the host and join the thread (bounded by `stop_timeout_s`)."""
        token, stop = self._token, self._stop
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)
        if self._thread is not None:
            finished = await asyncio.to_thread(self._done.wait, self.stop_timeout_s)
            if not finished:
                logger.warning("the libp2p host did not stop within %.0f s; abandoning its thread", self.stop_timeout_s)
        self.swarm = None

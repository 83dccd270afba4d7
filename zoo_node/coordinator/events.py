"""Fan-out of the coordinator's events to `WatchEvents` streams: one bounded queue per watcher.

A watcher that does not keep up loses its oldest events (counted in `dropped`), never slows the coordinator down.
Runs on the asyncio loop only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from zoo_node.proto import coordinator_pb2

RECENT_EVENTS = 200


class Subscription:
    """One watcher's queue; iterate with `await next_event()`."""

    def __init__(self, kinds: frozenset[int], max_queue: int) -> None:
        self.kinds = kinds
        self.max_queue = max_queue
        self.dropped = 0
        self._queue: deque[coordinator_pb2.Event] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: coordinator_pb2.Event) -> None:
        if self.kinds and event.kind not in self.kinds:
            return
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._ready.set()

    async def next_event(self) -> coordinator_pb2.Event:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()


class EventBus:
    """Publishes events to every subscription; keeps the last few for snapshots."""

    def __init__(self, max_queue: int = 1000) -> None:
        self.max_queue = max_queue
        self._subscriptions: set[Subscription] = set()
        self.recent: deque[coordinator_pb2.Event] = deque(maxlen=RECENT_EVENTS)

    def publish(self, kind: int, *, peer_id: str = "", epoch: int = 0, detail: str = "") -> coordinator_pb2.Event:
        event = coordinator_pb2.Event(unix_time=time.time(), kind=kind, peer_id=peer_id, epoch=epoch, detail=detail)
        self.recent.append(event)
        for subscription in list(self._subscriptions):
            subscription.offer(event)
        return event

    def subscribe(self, kinds: frozenset[int] = frozenset()) -> Subscription:
        subscription = Subscription(kinds, self.max_queue)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    @property
    def watchers(self) -> int:
        return len(self._subscriptions)

"""The gate every inbound gossip message passes before it can reach the membership view or the journal.

A message is dropped, and counted under its reason, when it is:

- `oversized`: its data is larger than `swarm.max_message_bytes`;
- `bad_signature`: the pubsub signature does not verify against its origin PeerID (or the worker binding's does not);
- `unregistered`: its origin is not a control PeerID registered on chain;
- `malformed`: not a well-formed envelope of the topic's kind;
- `wrong_signer`: the envelope (or its worker binding) names another node than the key that signed it;
- `wrong_run`: it is about another run;
- `replay`: a heartbeat not newer than the last one accepted from its node and older than `replay_window_s`, or any
  message older than `max_age_s`;
- `stale`: a heartbeat not newer than the last one accepted, but recent (a late copy by a slow path: harmless);
- `clock_skew`: dated further in the future than `max_skew_s`;

and elsewhere (zoo_node.control.swarm) `rate_limited` by gossipsub's spam protection. Drops never raise.

The guard runs in the swarm's trio thread; `set_registered` may be called from any thread (it swaps a frozenset).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from zoo_node.control.messages import MessageError, check_heartbeat, check_receipt, decode_envelope
from zoo_node.control.topics import HEARTBEAT, RunTopics
from zoo_node.proto import gossip_pb2

DROP_REASONS = (
    "oversized",
    "bad_signature",
    "unregistered",
    "malformed",
    "wrong_signer",
    "wrong_run",
    "replay",
    "stale",
    "clock_skew",
    "rate_limited",
)


class DropCounters:
    """Dropped messages by reason; safe to update from one thread and read from another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._counts[reason] += count

    def snapshot(self) -> dict[str, int]:
        """Every known reason (0 when none) plus any other reason seen."""
        with self._lock:
            counts = dict(self._counts)
        return {reason: counts.get(reason, 0) for reason in DROP_REASONS} | counts


@dataclass(frozen=True)
class Accepted:
    """A message that passed the guard."""

    origin: str
    kind: str
    envelope: gossip_pb2.GossipEnvelope
    binding: gossip_pb2.WorkerBinding | None


@dataclass(frozen=True)
class Dropped:
    """A message that did not pass; `attributable` when its origin's signature was good (it may be marked seen)."""

    reason: str
    detail: str
    attributable: bool


class GossipGuard:
    """Screens inbound messages of one run (see the module docstring for the reasons)."""

    def __init__(
        self,
        topics: RunTopics,
        *,
        max_message_bytes: int,
        max_age_s: float,
        max_skew_s: float = 60.0,
        replay_window_s: float = 30.0,
        counters: DropCounters | None = None,
        on_unregistered: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topics = topics
        self.max_message_bytes = max_message_bytes
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        # Gossip may still deliver a copy of an older heartbeat late (IWANT from the message cache serves 5 router
        # heartbeats' worth, and an overloaded host lags by seconds); only older repeats are called replays.
        self.replay_window_s = replay_window_s
        self.counters = counters or DropCounters()
        self._on_unregistered = on_unregistered
        self._clock = clock
        self._registered: frozenset[str] = frozenset()
        # Newest heartbeat accepted per origin (sender's unix ms); only the trio thread touches it.
        self._last_heartbeat_ms: dict[str, int] = {}

    @property
    def registered(self) -> frozenset[str]:
        return self._registered

    def set_registered(self, peer_ids: Iterable[str]) -> None:
        """Replace the set of control PeerIDs registered on chain."""
        self._registered = frozenset(peer_ids)

    def _drop(self, reason: str, detail: str, *, attributable: bool) -> Dropped:
        self.counters.add(reason)
        return Dropped(reason, detail, attributable)

    def precheck(self, origin: str, topics: Iterable[str], data: bytes) -> Dropped | None:
        """Cheap check before pubsub's duplicate filter: a heartbeat older than the newest accepted from its origin.

        Pubsub's seen-cache silently swallows a byte-identical replay for two minutes; checking first counts it.
        Copies of recent heartbeats (normal gossip redundancy) pass on to the seen-cache.
        """
        last = self._last_heartbeat_ms.get(origin)
        if last is None or len(data) > self.max_message_bytes:
            return None
        if [self.topics.kind_of(t) for t in topics] != [HEARTBEAT]:
            return None
        try:
            envelope = decode_envelope(data)
        except MessageError:
            return None
        age_s = self._clock() - envelope.sent_at_ms / 1000
        if envelope.node_peer_id == origin and envelope.sent_at_ms < last and age_s > self.replay_window_s:
            return self._drop("replay", f"heartbeat sent {age_s:.0f} s ago, older than the newest", attributable=False)
        return None

    def screen(self, origin: str, topics: Iterable[str], data: bytes, signature_ok: bool) -> Accepted | Dropped:
        """Accept or drop one message that pubsub has not seen before (`signature_ok`: its pubsub signature)."""
        kinds = [self.topics.kind_of(t) for t in topics]
        if len(kinds) != 1 or kinds[0] is None:
            return self._drop("malformed", f"topics {list(topics)} are not one topic of this run", attributable=False)
        kind = kinds[0]
        if len(data) > self.max_message_bytes:
            return self._drop("oversized", f"{len(data)} bytes > {self.max_message_bytes}", attributable=False)
        if not signature_ok:
            return self._drop("bad_signature", "pubsub signature does not verify", attributable=False)
        if origin not in self._registered:
            if self._on_unregistered is not None:
                self._on_unregistered(origin)
            return self._drop("unregistered", f"{origin} is not registered on chain", attributable=True)
        try:
            return self._check_envelope(origin, kind, data)
        except MessageError as exc:
            return self._drop(exc.reason, exc.detail, attributable=True)

    def _check_envelope(self, origin: str, kind: str, data: bytes) -> Accepted | Dropped:
        envelope = decode_envelope(data)
        if envelope.node_peer_id != origin:
            raise MessageError("wrong_signer", f"envelope names {envelope.node_peer_id}, signed by {origin}")
        if envelope.run_id != self.topics.run_id:
            raise MessageError("wrong_run", f"envelope is for run {envelope.run_id}")
        if envelope.WhichOneof("body") != kind:
            raise MessageError("malformed", f"a {envelope.WhichOneof('body')} on the {kind} topic")
        now_ms = self._clock() * 1000
        if envelope.sent_at_ms > now_ms + self.max_skew_s * 1000:
            raise MessageError("clock_skew", f"sent {(envelope.sent_at_ms - now_ms) / 1000:.1f} s in the future")
        if envelope.sent_at_ms < now_ms - self.max_age_s * 1000:
            raise MessageError("replay", f"sent {(now_ms - envelope.sent_at_ms) / 1000:.1f} s ago")
        binding = None
        if kind == HEARTBEAT:
            last = self._last_heartbeat_ms.get(origin, -1)
            if envelope.sent_at_ms <= last:
                age_s = (now_ms - envelope.sent_at_ms) / 1000
                reason = "replay" if age_s > self.replay_window_s else "stale"
                raise MessageError(reason, f"heartbeat sent {age_s:.1f} s ago, not newer than the newest accepted")
            binding = check_heartbeat(envelope)
            self._last_heartbeat_ms[origin] = envelope.sent_at_ms
        else:
            # Receipts are deduplicated by content ((node, shard, round)) by whoever consumes them.
            check_receipt(envelope)
        return Accepted(origin, kind, envelope, binding)

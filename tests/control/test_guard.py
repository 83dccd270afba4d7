"""The guard's verdicts, one reason at a time (the real-host counterpart is test_swarm.py)."""

from __future__ import annotations

import os

from zoo_node.control.guard import DROP_REASONS, Accepted, Dropped, GossipGuard
from zoo_node.control.messages import ControlKey, encode_envelope, sign_worker_binding
from zoo_node.control.topics import RunTopics
from zoo_node.proto import gossip_pb2, worker_pb2

TOPICS = RunTopics(4)
NOW = 1_000_000.0  # seconds
OPERATOR = "0x" + "12" * 20


def make_guard() -> tuple[GossipGuard, ControlKey]:
    key = ControlKey.from_seed(os.urandom(32))
    guard = GossipGuard(TOPICS, max_message_bytes=4096, max_age_s=60, max_skew_s=30, clock=lambda: NOW)
    guard.set_registered([key.peer_id])
    return guard, key


def heartbeat(key: ControlKey, sent_at_ms: int, *, run_id: int = 4, operator: str = OPERATOR) -> bytes:
    body = gossip_pb2.Heartbeat(operator=operator, health=worker_pb2.HEALTH_SERVING)
    body.worker.CopyFrom(sign_worker_binding(key, run_id, "12D3KooWdata"))
    return encode_envelope(key.peer_id, run_id, sent_at_ms, heartbeat=body)


def reason(verdict: Accepted | Dropped) -> str:
    return verdict.reason if isinstance(verdict, Dropped) else "accepted"


def test_each_reason_is_detected_and_counted_once() -> None:
    guard, key = make_guard()
    stranger = ControlKey.from_seed(os.urandom(32))
    now_ms = int(NOW * 1000)
    cases = [
        ("accepted", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms), True),
        ("oversized", key.peer_id, TOPICS.heartbeat, b"x" * 4097, True),
        ("bad_signature", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms + 1), False),
        ("unregistered", stranger.peer_id, TOPICS.heartbeat, heartbeat(stranger, now_ms), True),
        ("malformed", key.peer_id, TOPICS.heartbeat, b"\x08\x01\xff", True),
        ("malformed", key.peer_id, TOPICS.receipt, heartbeat(key, now_ms + 2), True),  # a heartbeat on receipts
        ("malformed", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms + 3, operator="nobody"), True),
        ("wrong_signer", key.peer_id, TOPICS.heartbeat, heartbeat(stranger, now_ms + 4), True),
        ("wrong_run", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms + 5, run_id=5), True),
        ("stale", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms), True),  # not newer, but recent
        ("replay", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms - 40_000), True),  # not newer, and old
        ("replay", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms - 61_000), True),  # older than max_age
        ("clock_skew", key.peer_id, TOPICS.heartbeat, heartbeat(key, now_ms + 31_000), True),
        ("malformed", key.peer_id, "/zoo/run/4/other/1", heartbeat(key, now_ms + 6), True),
    ]
    for expected, origin, topic, data, signature_ok in cases:
        assert reason(guard.screen(origin, [topic], data, signature_ok)) == expected, expected
    counts = guard.counters.snapshot()
    assert set(DROP_REASONS) <= set(counts)
    assert counts["malformed"] == 4 and counts["replay"] == 2 and counts["stale"] == 1 and counts["rate_limited"] == 0
    assert all(counts[r] == 1 for r in ("oversized", "bad_signature", "unregistered", "wrong_signer", "wrong_run"))


def test_precheck_counts_an_old_heartbeat_before_the_duplicate_filter() -> None:
    guard, key = make_guard()
    now_ms = int(NOW * 1000)
    old, recent, newest = (heartbeat(key, now_ms - delta) for delta in (40_000, 5_000, 0))
    assert guard.precheck(key.peer_id, [TOPICS.heartbeat], old) is None  # nothing accepted yet
    for data in (old, recent, newest):
        assert isinstance(guard.screen(key.peer_id, [TOPICS.heartbeat], data, True), Accepted)
    assert guard.precheck(key.peer_id, [TOPICS.heartbeat], newest) is None  # a copy of the newest passes on
    assert guard.precheck(key.peer_id, [TOPICS.heartbeat], recent) is None  # a late copy: for the seen-cache
    dropped = guard.precheck(key.peer_id, [TOPICS.heartbeat], old)
    assert isinstance(dropped, Dropped) and dropped.reason == "replay"
    assert guard.counters.snapshot()["replay"] == 1


def test_an_unregistered_sender_asks_for_a_registry_refresh() -> None:
    seen: list[str] = []
    guard = GossipGuard(TOPICS, max_message_bytes=4096, max_age_s=60, on_unregistered=seen.append, clock=lambda: NOW)
    stranger = ControlKey.from_seed(os.urandom(32))
    guard.screen(stranger.peer_id, [TOPICS.heartbeat], heartbeat(stranger, int(NOW * 1000)), True)
    assert seen == [stranger.peer_id]
    guard.set_registered([stranger.peer_id])
    assert isinstance(
        guard.screen(stranger.peer_id, [TOPICS.heartbeat], heartbeat(stranger, int(NOW * 1000)), True), Accepted
    )


def test_receipts_are_checked_for_run_and_content() -> None:
    guard, key = make_guard()
    now_ms = int(NOW * 1000)
    good = worker_pb2.Receipt(
        run_id=4, shard="stage/0", round=1, members=[worker_pb2.ReceiptMember(peer_id="p", samples=3)]
    )
    other_run = worker_pb2.Receipt(run_id=9, shard="stage/0", round=1, members=good.members)
    empty = worker_pb2.Receipt(run_id=4, shard="stage/0", round=2)
    verdicts = []
    for receipt in (good, other_run, empty):
        data = encode_envelope(key.peer_id, 4, now_ms, receipt=gossip_pb2.ReceiptAnnouncement(receipt=receipt))
        verdicts.append(guard.screen(key.peer_id, [TOPICS.receipt], data, True))
    assert [reason(v) for v in verdicts] == ["accepted", "wrong_run", "malformed"]

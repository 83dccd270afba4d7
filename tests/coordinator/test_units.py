"""The coordinator's pieces on their own: the run file, the store, the node book, coverage, the gossip readers,
events, the dashboard frame."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import sqlite3
from pathlib import Path

import pytest

from tests.coordinator.conftest import SPEC
from tests.coordinator.harness import write_run_file
from zoo_node.coordinator.dashboard import render_text, sparkline
from zoo_node.coordinator.events import EventBus
from zoo_node.coordinator.gossip_in import heard_receipt, reported_figures
from zoo_node.coordinator.nodebook import NodeBook
from zoo_node.coordinator.runfile import RunFileError, load_run_file
from zoo_node.coordinator.series import AliveNode, coverage_fraction, shard_coverage, thin
from zoo_node.coordinator.store import CoordinatorStore, NodePoint, RunPoint, StoreError
from zoo_node.coordinator.views import pending_hours, settled_mfu
from zoo_node.proto import coordinator_pb2 as pb
from zoo_node.proto import gossip_pb2, worker_pb2
from zoo_node.receipts import Receipt, RoundBody
from zoo_node.runspec import RunSpecError

COIN = 10**18


# ---- run file ------------------------------------------------------------------------------------------------
def test_run_file_splits_spec_and_settlement_terms(tmp_path: Path) -> None:
    path = write_run_file(tmp_path / "run.toml", SPEC, epoch_length_s=600, reward_per_epoch="1.5", funding=45)
    run_file = load_run_file(path)
    assert run_file.spec == SPEC
    assert run_file.spec_hash == bytes.fromhex(SPEC.content_hash)  # the terms are not part of the hash
    terms = run_file.settlement
    assert (terms.epoch_length_s, terms.reward_per_epoch_wei, terms.funding_wei) == (600, 3 * COIN // 2, 45 * COIN)
    assert "[settlement]" not in run_file.spec_toml and 'name = "coord-test"' in run_file.spec_toml


def test_the_testnet_example_run_file_registers_the_testnet_spec() -> None:
    from zoo_node.runspec import load_runspec

    docs = Path(__file__).resolve().parents[2] / "docs" / "examples"
    run_file = load_run_file(docs / "testnet-coordinator-run.toml")
    assert run_file.spec.content_hash == load_runspec(docs / "testnet-run.toml").content_hash
    assert run_file.settlement.funding_wei == 24 * run_file.settlement.reward_per_epoch_wei


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ('name = "x"\n[settlement]\nfunding = "lots"\n', RunFileError, "settlement.funding"),
        ('name = "x"\n[settlement]\nreward_per_epoch = -1\n', RunFileError, "settlement.reward_per_epoch"),
        ('name = "x"\n[settlement]\nepoch_length_s = 0\n', RunFileError, "settlement.epoch_length_s"),
        ('name = "x"\n[settlement]\nepoch = 5\n', RunFileError, "settlement.epoch"),
        ('name = "x"\n[settlement]\nreward_per_epoch = "20"\nfunding = "10"\n', RunFileError, "does not cover"),
        ('name = "x"\nsettlement = 3\n', RunFileError, "must be a table"),
        ('name = "x"\n[partition]\nstages = 0\n', RunSpecError, "partition.stages"),
        ("name = ", RunFileError, "not valid TOML"),
    ],
)
def test_a_bad_run_file_names_the_file_and_the_key(tmp_path: Path, text: str, error: type, message: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(error, match=message) as info:
        load_run_file(path)
    assert str(path) in str(info.value)


def test_coordinator_run_with_a_missing_run_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from zoo_node.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["coordinator", "run", "--spec", str(tmp_path / "nope.toml"), "--home", str(tmp_path / "h")])
    assert code == 2
    missing = tmp_path / "nope.toml"
    assert err.getvalue().strip() == f"error: {missing}: cannot read the run file: No such file or directory"


# ---- store ---------------------------------------------------------------------------------------------------
def _receipt(store: CoordinatorStore, announcer: str, digest: bytes, **kwargs) -> tuple[int, bool]:
    values = dict(run_id=1, announcer=announcer, digest=digest, shard="stage/0", round=1, tokens=64, flops=1.0,
                  seconds=2.0, device="cpu x1", receipt=b"blob")  # fmt: skip
    return store.add_receipt(**{**values, **kwargs})


def test_store_keeps_receipts_once_across_a_reopen_and_closes_epochs_atomically(tmp_path: Path) -> None:
    store = CoordinatorStore(tmp_path / "c.sqlite3")
    first, new = _receipt(store, "A", b"d1", heard_at=10.0)
    assert new
    assert _receipt(store, "A", b"d1") == (first, False)  # the same announcement again
    second, _ = _receipt(store, "B", b"d1", heard_at=11.0)  # another member's copy of the round
    third, _ = _receipt(store, "A", b"d2", heard_at=30.0, tokens=100)
    row = dict(run_id=1, shard="stage/0", round=2, tokens=0, flops=0.0, seconds=0.0, device="", receipt=b"")
    batch = store.add_receipts([{**row, "announcer": "C", "digest": b"d3"}, {**row, "announcer": "A", "digest": b"d1"},
                                {**row, "announcer": "C", "digest": b"d3"}])  # fmt: skip
    assert batch[1:] == [(first, False), (batch[0][0], False)] and batch[0][1]
    store.close()

    store = CoordinatorStore(tmp_path / "c.sqlite3")  # a restart
    fourth = batch[0][0]
    assert [r.id for r in store.pending_receipts(1)] == [first, second, third, fourth]
    assert [r.id for r in store.pending_receipts(1, heard_before=20.0)] == [first, second]
    totals = store.receipt_totals(1)
    assert (totals.heard, totals.pending, totals.tokens) == (4, 4, 228)
    store.save_intent(1, 1, {"receipt_ids": [first, second]})
    assert store.unfinished_intent(1) == (1, {"receipt_ids": [first, second]})
    store.finish_intent(1, 1, [first, second])
    assert store.unfinished_intent(1) is None
    assert store.epoch_of_receipts(1) == {1: 2}
    assert [r.id for r in store.pending_receipts(1)] == [third, fourth]
    with pytest.raises(StoreError, match="epoch 1 is already settled"):
        store.save_intent(1, 1, {"receipt_ids": [third]})
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_store_series_round_trip_missing_values(tmp_path: Path) -> None:
    store = CoordinatorStore(tmp_path / "c.sqlite3")
    store.add_run_point(RunPoint(1.0, 2, 1, 0.5, 10.0, None, math.nan, 5, {"stage/0": (2, 10.0), "stage/1": (0, 0.0)}))
    shards = {"stage/0": (2, 6.0), "stage/1": (1, 6.0)}
    store.add_run_point(RunPoint(2.0, 3, 0, 1.0, 12.0, 2.5, 0.1, 9, shards, receipts=4, gpu_hours=1.5, cpu_hours=0.5))
    points = store.run_points()
    assert (points[1].receipts, points[1].gpu_hours, points[1].cpu_hours) == (4, 1.5, 0.5)
    assert [p.loss for p in points] == [None, 2.5] and points[0].mfu is None
    assert points[1].shards == {"stage/0": (2, 6.0), "stage/1": (1, 6.0)}
    assert [p.t for p in store.run_points(since=1.5)] == [2.0]
    store.save_nodes([], [NodePoint(5.0, "P", 1.0, None, 0.2), NodePoint(6.0, "P", 2.0, 1.5, None)])
    assert [(p.loss, p.mfu) for p in store.node_points("P")] == [(None, 0.2), (1.5, None)]
    assert store.prune_node_points(older_than=5.5) == 1


def test_long_series_are_thinned_evenly_in_time_keeping_the_latest(tmp_path: Path) -> None:
    store = CoordinatorStore(tmp_path / "c.sqlite3")
    for t in range(1000, 2000):
        store.add_run_point(RunPoint(float(t), 1, 0, 1.0, float(t), None, None, t, {}))
    store.save_nodes([], [NodePoint(float(t), "P" if t % 2 else "Q", float(t), None, None) for t in range(1000, 2000)])
    points = store.run_points(max_points=11)
    assert [p.t for p in points] == [float(t) for t in range(1000, 2000, 100)] + [1999.0]
    assert [p.t for p in store.run_points(since=1989.0, max_points=50)] == [float(t) for t in range(1990, 2000)]
    assert len(store.run_points()) == 1000  # 0: every point
    node = store.node_points("P", 0.0, 5)
    assert [p.t for p in node] == [1001.0, 1251.0, 1501.0, 1751.0, 1999.0] and {p.peer_id for p in node} == {"P"}


def test_a_store_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open the coordinator's store"):
        CoordinatorStore(path)


# ---- node book and coverage ----------------------------------------------------------------------------------
def _observe(book: NodeBook, peer: str, shard: str = "stage/0", throughput: float = 1.0):
    return book.observe(peer, operator="0x1", shard=shard, throughput=throughput, health=2, data_peer_id="D",
                        version="v", multiaddrs=[], loss=None, mfu=None)  # fmt: skip


def test_node_book_tells_joined_gone_and_returned() -> None:
    now = [100.0]
    book = NodeBook(timeout_s=5.0, clock=lambda: now[0])
    assert _observe(book, "A") == "joined" and _observe(book, "B") == "joined"
    assert _observe(book, "A") is None
    now[0] = 104.0
    _observe(book, "B")
    now[0] = 105.5
    assert book.sweep() == ["A"]  # silent for 5.5 s
    assert book.counts() == (1, 1) and [r.peer_id for r in book.records()] == ["B", "A"]  # alive first
    assert _observe(book, "A") == "returned"
    assert {r.peer_id for r in book.take_dirty()} == {"A", "B"} and book.take_dirty() == []


def test_a_restarted_book_knows_every_node_but_counts_none_alive_until_heard(tmp_path: Path) -> None:
    store = CoordinatorStore(tmp_path / "c.sqlite3")
    book = NodeBook(5.0)
    _observe(book, "A")
    book.count_receipt("A")
    store.save_nodes(book.take_dirty())
    restarted = NodeBook(5.0, store.nodes())
    assert restarted.counts() == (0, 1) and restarted.get("A").receipts == 1
    assert _observe(restarted, "A") == "returned"


def test_shard_coverage_counts_alive_replicas_and_lists_unknown_shards() -> None:
    shards = ["stage/0", "stage/1", "experts/0/0"]
    nodes = [AliveNode("a", "stage/0", 10.0), AliveNode("b", "stage/0", 5.0), AliveNode("c", "stage/7", 1.0),
             AliveNode("d", "", 3.0)]  # fmt: skip
    coverage = shard_coverage(shards, nodes)
    assert [(c.shard, c.replicas, c.throughput) for c in coverage] == [
        ("stage/0", ("a", "b"), 15.0), ("stage/1", (), 0.0), ("experts/0/0", (), 0.0), ("stage/7", ("c",), 1.0),
    ]  # fmt: skip
    assert coverage_fraction(shards, coverage) == pytest.approx(1 / 3)
    # A worker holding two shards is a replica of both; its tokens/s are split between them.
    both = shard_coverage(shards, [AliveNode("e", "stage/1, experts/0/0", 8.0)])
    assert [(c.shard, c.replicas, c.throughput) for c in both] == [
        ("stage/0", (), 0.0), ("stage/1", ("e",), 4.0), ("experts/0/0", ("e",), 4.0),
    ]  # fmt: skip


def test_thin_keeps_the_latest_point_and_the_bound() -> None:
    points = list(range(1000))
    assert thin(points, 10)[-1] == 999 and len(thin(points, 10)) == 10 and thin(points, 10)[0] == 0
    assert thin(points[:5], 10) == [0, 1, 2, 3, 4] and thin(points, 1) == [999]


def test_hours_and_mfu_figures() -> None:
    gpu, cpu = pending_hours([("NVIDIA H100 80GB HBM3 x8", 450.0), ("cpu x1", 3600.0), ("", 1800.0)])
    assert gpu == pytest.approx(1.0) and cpu == pytest.approx(1.5)
    report = {"nodes": {"a": {"verified_flops": "100", "mfu": 0.5}, "b": {"verified_flops": "300", "mfu": 0.25}}}
    assert settled_mfu(report) == pytest.approx(400 / (200 + 1200))
    assert settled_mfu({"nodes": {"a": {"verified_flops": "0", "mfu": None}}}) is None


# ---- gossip readers -------------------------------------------------------------------------------------------
def _heartbeat_with_metrics_class():
    """A Heartbeat message type that also carries a `metrics` map, built at run time in a private pool: the shape
    the coordinator reads when the gossip schema grows one."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="probe/heartbeat.proto", package="probe", syntax="proto3")
    entry = descriptor_pb2.DescriptorProto(name="MetricsEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=1, label=1)
    message = file.message_type.add(name="Heartbeat")
    message.nested_type.append(entry)
    message.field.add(name="shard", number=2, type=9, label=1)
    message.field.add(name="metrics", number=10, type=11, label=3, type_name=".probe.Heartbeat.MetricsEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("probe.Heartbeat"))


def test_reported_figures_follow_the_heartbeat_schema() -> None:
    assert reported_figures(gossip_pb2.Heartbeat(shard="stage/0", throughput=5.0)) == (None, None)
    probe = _heartbeat_with_metrics_class()
    assert reported_figures(probe(metrics={"loss": 2.75, "mfu": 0.31})) == (2.75, 0.31)
    assert reported_figures(probe(metrics={"loss": math.nan})) == (None, None)  # NaN is no figure


def test_heard_receipt_keeps_the_digest_or_the_bytes_of_a_malformed_one() -> None:
    body = RoundBody.of(4, "stage/0", 9, {"12D3KooWA": 3, "12D3KooWB": 5})
    receipt = Receipt(body, {}, tokens=128, seconds=4.0, device="cpu x1")
    heard = heard_receipt(receipt.to_proto())
    assert heard.parsed and heard.digest == receipt.digest and (heard.shard, heard.round, heard.tokens) == (
        "stage/0", 9, 128,
    )  # fmt: skip
    twice = worker_pb2.Receipt(run_id=4, shard="stage/0", round=9,
                               members=[worker_pb2.ReceiptMember(peer_id="X", samples=1)] * 2)  # fmt: skip
    malformed = heard_receipt(twice)
    assert not malformed.parsed and malformed.digest == heard_receipt(twice).digest
    assert Receipt.from_bytes(heard.blob) == receipt


# ---- events ---------------------------------------------------------------------------------------------------
def test_event_watchers_get_their_kinds_and_a_slow_one_loses_the_oldest() -> None:
    async def scenario() -> None:
        bus = EventBus(max_queue=2)
        gone = bus.subscribe(frozenset({pb.EVENT_KIND_NODE_GONE}))
        everything = bus.subscribe()
        bus.publish(pb.EVENT_KIND_NODE_JOINED, peer_id="A")
        bus.publish(pb.EVENT_KIND_NODE_GONE, peer_id="B")
        bus.publish(pb.EVENT_KIND_RECEIPT, peer_id="C")
        assert (await asyncio.wait_for(gone.next_event(), 1)).peer_id == "B"
        assert everything.dropped == 1
        assert [(await everything.next_event()).peer_id for _ in range(2)] == ["B", "C"]
        bus.unsubscribe(gone)
        assert bus.watchers == 1

    asyncio.run(scenario())


# ---- dashboard ------------------------------------------------------------------------------------------------
PEER_A, PEER_B = "12D3KooW" + "A" * 20, "12D3KooW" + "B" * 20


def _snapshot() -> dict:
    nan = math.nan
    return {
        "taken_at": 1000.0,
        "address": "127.0.0.1:5555",
        "run": {
            "run_id": 7, "name": "demo", "status": "active", "current_epoch": 4, "last_settled_epoch": 3,
            "next_epoch_end_unix": 1600.0, "nodes_alive": 2, "nodes_gone": 1, "coverage": 0.5, "throughput": 1234.0,
            "loss": 2.5, "mfu": 0.123, "gpu_hours": 1.5, "cpu_hours": 0.25, "tokens": 98765,
            "receipts": {"heard": 10, "pending": 2, "accepted": 7, "rejected": 1},
            "loss_series": [{"value": v} for v in (4.0, 3.5, 3.0, 2.5)],
            "mfu_series": [{"value": v} for v in (0.1, 0.12, 0.123)], "throughput_series": [],
            "shards": [
                {"shard": "stage/0", "replicas": [PEER_A], "throughput": 1234.0, "covered": True},
                {"shard": "stage/1", "replicas": [], "throughput": 0.0, "covered": False},
            ],
            "settlement_problem": "AllocationExceedsFunds: fund the pool",
        },
        "nodes": {"nodes": [
            {"peer_id": PEER_A, "operator": "0x" + "1" * 40, "alive": True, "health": "serving",
             "shard": "stage/0", "last_seen_unix": 999.0, "throughput": 1234.0, "loss": 2.5, "mfu": 0.123,
             "receipts": 6},
            {"peer_id": PEER_B, "operator": "0x" + "2" * 40, "alive": False, "health": "serving",
             "shard": "stage/1", "last_seen_unix": 880.0, "throughput": 0.0, "loss": nan, "mfu": nan, "receipts": 4},
        ]},
        "epochs": [{"epoch": 3, "paid_wei": str(3 * COIN), "allocated_wei": str(9 * COIN), "accepted": 3,
                    "rejected": 1, "root": "0x" + "ab" * 32}],
    }  # fmt: skip


def test_a_dashboard_frame_shows_shards_nodes_trends_and_the_epoch() -> None:
    frame = render_text(_snapshot(), width=170)
    assert "run demo (#7) active" in frame and "epoch 4 (ends in 10m), last settled 3" in frame
    assert "nodes 2 alive / 1 gone" in frame and "coverage 50.0%" in frame and "1,234 tokens/s" in frame
    assert "loss 2.5 " + sparkline([4.0, 3.5, 3.0, 2.5]) in frame and "MFU 12.3%" in frame
    lines = frame.splitlines()
    stage1 = next(line for line in lines if "stage/1" in line and "│ 0 " in line)
    assert "-" in stage1  # an uncovered shard: no replicas
    gone = next(line for line in lines if "12D3KooW…BBBBBB" in line)
    assert "gone" in gone and "2m ago" in gone
    assert "settlement problem: AllocationExceedsFunds" in frame
    assert "│ 3     │ 3" in frame.replace("  ", " ") or "3            " in frame  # the epoch row
    assert "receipts: 10 heard, 2 pending, 7 accepted, 1 rejected" in frame


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([2.0, 2.0]) == "▅▅" and sparkline([]) == "" and sparkline([math.nan, 1.0]) == "▅"


def test_the_coordinator_loads_py_libp2p_only_when_its_swarm_starts() -> None:
    """py-libp2p and hivemind cannot share a process: importing the coordinator (or its CLI) must not load it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import zoo_node.cli, zoo_node.commands.coordinator\n"
        "import zoo_node.coordinator.daemon, zoo_node.coordinator.dashboard\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'libp2p', 'torch', 'hivemind'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""The serving pieces in one process: wire format and checks, the shard runtime (activations, recompute, eviction,
update gating), replica choice and bans, and the shard-choice rule."""

from __future__ import annotations

import threading

import pytest
import torch

from zoo_node.runspec import RunSpec
from zoo_node.worker.records import ServerRecord
from zoo_node.worker.remote import ShardCall, Transport, remote_call
from zoo_node.worker.routing import NoReplica, Router, expected_finish_s
from zoo_node.worker.runtime import MissingActivations, ShardRuntime
from zoo_node.worker.shard_choice import choose_shards, should_move
from zoo_node.worker.shards import build_backend
from zoo_node.worker.wire import (
    PART_BYTES,
    BadTensorError,
    IncompleteMessage,
    TensorCheck,
    check_tensors,
    decode,
    encode,
)

SPEC = RunSpec(name="unit")


def test_tensors_above_the_message_cap_are_streamed_in_parts_and_come_back_exact():
    big = torch.randn(3 * PART_BYTES // 4)  # 3 parts of fp32
    small = torch.arange(5)
    empty = torch.zeros(0)
    messages = encode([big, small, empty], {"shard": "stage/1", "n": 3})
    assert len(messages) >= 3 and all(m.ByteSize() < 4 * 1024 * 1024 for m in messages)
    tensors, header = decode(messages)
    assert header == {"shard": "stage/1", "n": 3}
    assert torch.equal(tensors[0], big) and torch.equal(tensors[1], small) and tensors[2].numel() == 0
    # A stream cut short (hivemind ends it quietly when p2pd closes it) is told apart from a complete one.
    with pytest.raises(IncompleteMessage, match="of the 3 tensors"):
        decode(messages[:-1])


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.zeros(2, 3, 7), "shape"),
        (torch.zeros(2, 3, 8, dtype=torch.float64), "dtype"),
        (torch.tensor([[[float("nan")] * 8]]), "NaN"),
        (torch.tensor([[[float("inf")] * 8]]), "NaN or Inf"),
        (torch.zeros(2, 8), "shape"),
    ],
)
def test_a_tensor_that_is_not_what_the_shard_takes_is_refused(tensor, message):
    with pytest.raises(BadTensorError, match=message):
        check_tensors([tensor], [TensorCheck("hidden", torch.float32, (None, None, 8))])
    with pytest.raises(BadTensorError, match="got 2 tensors"):
        check_tensors([tensor, tensor], [TensorCheck("hidden", torch.float32, (None, None, 8))])


def _expert_runtime() -> ShardRuntime:
    return ShardRuntime(build_backend(SPEC, "experts/1/0", None), activation_ttl_s=60.0)


def _rows(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(n)
    return torch.randn(n, 128), torch.tensor([0, 1, 2, 3, 0, 1][:n])


def test_runtime_backward_equals_local_autograd_and_counts_a_micro_batch_once():
    runtime = _expert_runtime()
    module = runtime.backend.module
    rows, ids = _rows()
    header = {"micro": "m0", "samples": 4, "layer": 2}
    out = runtime.forward("k1", [rows, ids], header)[0]
    grad = torch.randn_like(out)
    grad_rows = runtime.backward("k1", [grad], header)[0]
    remote_grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    module.zero_grad(set_to_none=True)
    x = rows.clone().requires_grad_(True)
    module(2, x, ids).backward(grad)
    torch.testing.assert_close(grad_rows, x.grad, rtol=0, atol=0)
    assert remote_grads and all(
        torch.equal(remote_grads[n], p.grad) for n, p in module.named_parameters() if n in remote_grads
    )
    # The second MoE layer of the same micro-batch is counted as work, not as more samples.
    runtime.forward("k2", [rows, ids], {**header, "layer": 3})
    runtime.backward("k2", [grad], {**header, "layer": 3})
    assert runtime.progress.micro_batches == 1 and runtime.progress.samples == 4
    assert runtime.progress.tokens == 12 and runtime.progress.flops > 0
    assert runtime.pending == 0


def test_a_backward_without_activations_recomputes_from_resent_inputs_or_says_what_is_missing():
    runtime = _expert_runtime()
    rows, ids = _rows()
    header = {"micro": "m1", "samples": 4, "layer": 2}
    out = runtime.forward("k", [rows, ids], header)[0]
    expected = runtime.backward("k", [torch.ones_like(out)], header)[0]
    with pytest.raises(MissingActivations, match="no activations for k"):
        runtime.backward("k", [torch.ones_like(out)], header)
    again = runtime.backward("k", [torch.ones_like(out)], header, inputs=[rows, ids])[0]
    torch.testing.assert_close(again, expected, rtol=0, atol=0)


def test_activations_whose_backward_never_comes_are_evicted():
    runtime = ShardRuntime(build_backend(SPEC, "experts/1/0", None), activation_ttl_s=0.0)
    rows, ids = _rows()
    runtime.forward("orphan", [rows, ids], {"micro": "a", "layer": 2})
    runtime.forward("next", [rows, ids], {"micro": "b", "layer": 2})  # any later call evicts expired graphs
    assert runtime.evicted >= 1
    with pytest.raises(MissingActivations):
        runtime.backward("orphan", [torch.ones(6, 128)], {"micro": "a", "layer": 2})


def test_an_update_waits_for_pending_graphs_holds_new_micro_batches_and_lets_work_under_way_finish():
    runtime = _expert_runtime()
    rows, ids = _rows()
    first = {"micro": "m0", "samples": 4, "layer": 2}
    runtime.forward("a", [rows, ids], first)
    acquired = threading.Event()
    order: list[str] = []

    def update() -> None:
        with runtime.exclusive(drain_timeout=30):
            order.append("update")
            acquired.set()

    updater = threading.Thread(target=update)
    updater.start()
    assert not acquired.wait(0.5), "the update must wait while a graph is pending"

    new_done = threading.Event()

    def new_micro_batch() -> None:
        runtime.forward("c", [rows, ids], {"micro": "m9", "samples": 4, "layer": 2})
        order.append("new micro-batch")
        new_done.set()

    newcomer = threading.Thread(target=new_micro_batch)
    newcomer.start()
    assert not new_done.wait(0.5), "a new micro-batch must wait for the update"
    # The same micro-batch's next MoE layer goes ahead (blocking it would deadlock the micro-batch), then backward.
    runtime.forward("b", [rows, ids], {**first, "layer": 3})
    runtime.backward("b", [torch.ones(6, 128)], {**first, "layer": 3})
    runtime.backward("a", [torch.ones(6, 128)], first)
    updater.join(10)
    newcomer.join(10)
    assert order == ["update", "new micro-batch"]


def test_remote_call_through_the_local_transport_is_differentiable_and_matches_the_module():
    runtime = _expert_runtime()
    record = ServerRecord(peer="me", shard="experts/1/0", expires=float("inf"))
    router = Router(lambda shard: [record])
    transport = Transport(None, None, "unit", "me", {"experts/1/0": runtime})
    rows, ids = _rows()
    x = rows.clone().requires_grad_(True)
    (y,) = remote_call(ShardCall(router, transport, "experts/1/0", {"micro": "m", "layer": 2}, 6), x, ids)
    y.square().sum().backward()
    module = runtime.backend.module
    ref_x = rows.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    module(2, ref_x, ids).square().sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=0, atol=0)


def _record(peer: str, tps: float = 0.0, queued: int = 0, shard: str = "stage/1", expires: float = 1e18):
    return ServerRecord(peer=peer, shard=shard, tokens_per_s=tps, queued_tokens=queued, expires=expires)


def test_the_router_picks_the_earliest_expected_finish_and_skips_banned_replicas():
    fast_but_busy = _record("a", tps=1000, queued=5000)  # 5.1 s
    slow_but_idle = _record("b", tps=200, queued=0)  # 0.5 s
    router = Router(lambda shard: [fast_but_busy, slow_but_idle])
    assert expected_finish_s(slow_but_idle, 100) < expected_finish_s(fast_but_busy, 100)
    assert router.choose("stage/1", 100).peer == "b"
    router.ban("stage/1", slow_but_idle)
    assert router.is_banned("stage/1", "b")
    assert router.choose("stage/1", 100).peer == "a"
    router.ban("stage/1", fast_but_busy)
    with pytest.raises(NoReplica, match="stage/1"):
        router.choose("stage/1", 100)
    # Work this worker has in flight on a replica counts too.
    router2 = Router(lambda shard: [_record("a", tps=100), _record("b", tps=100)])
    router2.started("stage/1", "a", 1000)
    assert router2.choose("stage/1", 10).peer == "b"


def test_a_joining_worker_takes_the_least_covered_shards_and_moves_only_beyond_the_margin():
    records = {
        "stage/0": [_record("a", 10, shard="stage/0"), _record("b", 10, shard="stage/0")],
        "stage/1": [_record("c", 900, shard="stage/1")],
        "experts/0/0": [_record("a", 100, shard="experts/0/0"), _record("c", 100, shard="experts/0/0")],
        "experts/0/1": [],
        "experts/1/0": [_record("d", 50, shard="experts/1/0")],
    }
    # Uncovered first, then one-replica shards by throughput; the two slow stage/0 replicas still count as two.
    assert choose_shards(records, 1) == ["experts/0/1"]
    assert choose_shards(records, 3) == ["experts/0/1", "experts/1/0", "stage/1"]
    # One stage per worker: with stage/1 taken, the next pick skips stage/0.
    assert "stage/0" not in choose_shards(records, 5)[:4]
    # b is one of two on stage/0 while experts/0/1 has nobody: it should move there; c (sole stage/1) must stay.
    assert should_move(records, "b", "stage/0", margin=0.5) == "experts/0/1"
    assert should_move(records, "c", "stage/1", margin=0.5) is None
    # Same replica counts: move only when the throughput gap is beyond the margin.
    pair = {"stage/0": [_record("a", 100, shard="stage/0")], "stage/1": [_record("b", 60, shard="stage/1")]}
    two = {"stage/0": [*pair["stage/0"], _record("x", 100, shard="stage/0")], "stage/1": pair["stage/1"]}
    assert should_move(two, "x", "stage/0", margin=0.5) is None  # 60 is not below half of 100
    slow = {**two, "stage/1": [_record("b", 40, shard="stage/1")]}
    assert should_move(slow, "x", "stage/0", margin=0.5) == "stage/1"


def test_a_call_during_a_stuck_update_times_out_with_a_clear_error_and_one_update_holds_at_a_time():
    runtime = _expert_runtime()
    rows, ids = _rows()
    release, held, second_held = threading.Event(), threading.Event(), threading.Event()

    def stuck_update() -> None:
        with runtime.exclusive():
            held.set()
            release.wait(30)

    def second_update() -> None:
        with runtime.exclusive():
            second_held.set()

    holder = threading.Thread(target=stuck_update)
    holder.start()
    assert held.wait(10)
    other = threading.Thread(target=second_update)
    other.start()
    # An in-process call (a worker's driver uses its own shards directly) fails after its timeout; it does not hang.
    with pytest.raises(TimeoutError, match="busy with an optimizer step"):
        runtime.forward("k", [rows, ids], {"micro": "m", "layer": 2}, timeout=0.5)
    assert not second_held.is_set(), "a second update must wait for the first"
    release.set()
    holder.join(10)
    assert second_held.wait(10)
    other.join(10)
    runtime.forward("k", [rows, ids], {"micro": "m", "layer": 2}, timeout=5)  # serving again


def test_a_backward_whose_graph_was_dropped_for_an_update_recomputes_on_the_same_replica():
    runtime = _expert_runtime()
    record = ServerRecord(peer="me", shard="experts/1/0", expires=float("inf"))
    router = Router(lambda shard: [record], bans=False)  # a worker's own shard: never banned
    transport = Transport(None, None, "unit", "me", {"experts/1/0": runtime})
    rows, ids = _rows()
    x = rows.clone().requires_grad_(True)
    (y,) = remote_call(ShardCall(router, transport, "experts/1/0", {"micro": "m", "layer": 2}, 6), x, ids)
    with runtime.exclusive(drain_timeout=0.0):  # an update that could not wait: the pending graph is dropped
        pass
    assert runtime.pending == 0 and runtime.evicted == 1
    y.sum().backward()
    module = runtime.backend.module
    ref_x = rows.clone().requires_grad_(True)
    module(2, ref_x, ids).sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=0, atol=0)
    router.ban("experts/1/0", record)
    assert not router.is_banned("experts/1/0", "me")

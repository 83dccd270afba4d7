"""The coordinator in a live swarm: a dev chain, `zoo-node coordinator run` and three control-plane peers (real
py-libp2p hosts in their own processes, registered on chain with real node homes) on loopback.

What a run owner sees through CoordinatorService: every node with its shard, per-shard coverage and throughput, a
killed node turning gone (also as a streamed event), a reflection-only client, bad requests refused while the server
keeps serving, admin calls guarded by the token, and the dashboard and queries on top.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.coordinator.harness import (
    CoordinatorProcess,
    PeerProcess,
    SimNode,
    configure_coordinator,
    seed_flops_table,
    write_run_file,
)
from tests.fixtures.homes import TEST_PASSWORD, TEST_SCRYPT_N
from tests.fixtures.polling import wait_until
from zoo_node.chain.devchain import start_devchain
from zoo_node.config import NETWORK_PRESETS, write_config
from zoo_node.coordinator.client import CoordinatorClient
from zoo_node.identity import create_keys, ensure_home
from zoo_node.proto import coordinator_pb2 as pb
from zoo_node.proto import coordinator_pb2_grpc as pb_grpc
from zoo_node.proto import worker_pb2

SHARDS = {0: ("stage/0", 120.0), 1: ("stage/1", 80.0), 2: ("stage/0", 40.0)}
SERVICE = "zoo.node.v1.CoordinatorService"


class Swarm:
    def __init__(self, chain, coordinator: CoordinatorProcess, nodes: list[SimNode], peers: list[PeerProcess]):
        self.chain = chain
        self.coordinator = coordinator
        self.nodes = nodes
        self.peers = peers
        self.ready_at = time.monotonic()

    @property
    def client(self) -> CoordinatorClient:
        return self.coordinator.client()


def _home(root: Path, name: str):
    home = ensure_home(root / name)
    identity = create_keys(home, TEST_PASSWORD, scrypt_n=TEST_SCRYPT_N)
    write_config(home / "config.toml", NETWORK_PRESETS["devnet"])
    return home, identity


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory, flops_table):
    from tests.coordinator.conftest import SPEC

    root = tmp_path_factory.mktemp("swarm")
    chain = start_devchain(accounts=4, deployment_file=root / "deployment.json")
    processes: list = []
    try:
        password = root / "password"
        password.write_text(TEST_PASSWORD + "\n")
        home, _ = _home(root, "coord")
        configure_coordinator(home, chain)
        run_file = write_run_file(root / "run.toml", SPEC)
        seed_flops_table(home, run_file, flops_table)
        coordinator = CoordinatorProcess(home, run_file, password, root / "coord.log")
        processes.append(coordinator)
        coordinator.start()
        with coordinator.client() as client:
            run = client.get_run()
        nodes = [SimNode(*_home(root, f"node{i}"), chain, run.run_id) for i in range(3)]
        peers = []
        for i, node in enumerate(nodes):
            peer = PeerProcess(node.home, run.run_id, run.coordinator_multiaddrs, root / f"peer{i}.log")
            processes.append(peer)
            peers.append(peer)
        for i, peer in enumerate(peers):
            peer.wait_ready()
            shard, throughput = SHARDS[i]
            peer.set(shard=shard, throughput=throughput, loss=3.0 - 0.1 * i, mfu=0.01 * (i + 1))
        yield Swarm(chain, coordinator, nodes, peers)
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                process.kill() if isinstance(process, PeerProcess) else process.stop(timeout_s=10)
        chain.stop()


def _alive_with_shards(client: CoordinatorClient) -> dict[str, str]:
    return {n.peer_id: n.shard for n in client.list_nodes().nodes if n.alive and n.shard}


def test_list_nodes_shows_every_node_with_its_shard_within_15_s(swarm: Swarm) -> None:
    expected = {node.peer_id: SHARDS[i][0] for i, node in enumerate(swarm.nodes)}
    with swarm.client as client:
        # The deadline counts from the moment the peers were up and dialling the coordinator.
        left = 15.0 - (time.monotonic() - swarm.ready_at)
        wait_until(lambda: _alive_with_shards(client) == expected, left, "ListNodes to show all 3 nodes with shards")
        reply = client.list_nodes()
    assert (reply.alive, reply.gone) == (3, 0)
    by_peer = {n.peer_id: n for n in reply.nodes}
    for i, node in enumerate(swarm.nodes):
        view = by_peer[node.peer_id]
        assert view.operator == node.owner and view.data_peer_id == node.worker  # the verified worker binding
        assert view.throughput == SHARDS[i][1] and view.health == worker_pb2.HEALTH_SERVING


def test_get_run_reports_coverage_and_throughput_per_shard(swarm: Swarm) -> None:
    with swarm.client as client:
        wait_until(lambda: client.get_run().nodes_alive == 3, 15, "GetRun to count 3 alive nodes")
        # The series are sampled: wait for a sample taken with all three nodes alive.
        wait_until(lambda: any(p.value == 3 for p in client.get_run().nodes_series), 15, "a sample with 3 nodes alive")
        run = client.get_run()
    shards = {s.shard: s for s in run.shards}
    assert set(shards) == {"stage/0", "stage/1"}  # the spec's shards (zen-3-tiny in 2 stages)
    a, b, c = (n.peer_id for n in swarm.nodes)
    assert sorted(shards["stage/0"].replicas) == sorted([a, c]) and shards["stage/0"].throughput == 160.0
    assert list(shards["stage/1"].replicas) == [b] and shards["stage/1"].throughput == 80.0
    assert run.coverage == 1.0 and run.throughput == 240.0
    assert run.status == "active" and run.name == "coord-test" and run.current_epoch == 1
    assert max(p.value for p in run.throughput_series) == 240.0
    spec = swarm.client.get_run_spec()
    assert spec.spec_hash == run.spec_hash and 'name = "coord-test"' in spec.toml


def test_a_reflection_client_without_stubs_lists_the_services_and_calls_get_run(swarm: Swarm) -> None:
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(swarm.coordinator.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        pool = descriptor_pool.DescriptorPool(database)  # a private pool: nothing from zoo_node.proto
        method = pool.FindServiceByName(SERVICE).FindMethodByName("GetRun")
        request_class = message_factory.GetMessageClass(method.input_type)
        reply_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{SERVICE}/GetRun",
            request_serializer=request_class.SerializeToString,
            response_deserializer=reply_class.FromString,
        )
        reply = call(request_class(max_points=5), timeout=10)
    assert reply.DESCRIPTOR.full_name == "zoo.node.v1.RunView"
    assert reply.run_id >= 1 and reply.name == "coord-test" and len(reply.shards) == 2
    assert len(reply.throughput_series) <= 5


def _raw_call(address: str, method: str, payload: bytes, metadata=()):
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None)
        return call(payload, timeout=10, metadata=metadata)


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details()


def test_malformed_and_oversized_requests_get_invalid_argument_and_the_server_keeps_serving(swarm: Swarm) -> None:
    address = swarm.coordinator.address
    # Bytes that are not a GetNodeRequest (a length-delimited field running past the end).
    code, detail = _code(lambda: _raw_call(address, "GetNode", b"\x0a\xff\xff\x03abc"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid message" in detail
    # 100 KiB: more than coordinator.max_request_bytes (64 KiB), less than the transport's limit.
    big = pb.GetNodeRequest(peer_id="1" * 100_000).SerializeToString()
    code, detail = _code(lambda: _raw_call(address, "GetNode", big))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "more than the limit of 65536" in detail
    with swarm.client as client:
        stub = client.stub
        for call, expected in [
            (lambda: stub.GetNode(pb.GetNodeRequest(peer_id="not/base58!")), "peer_id"),
            (lambda: stub.GetNode(pb.GetNodeRequest(peer_id="12D3KooW" + "1" * 44, max_points=10**6)), "max_points"),
            (lambda: stub.GetEpoch(pb.GetEpochRequest(epoch=0)), "epochs count from 1"),
            (lambda: stub.GetRun(pb.GetRunRequest(since_unix=math.nan)), "since_unix"),
            (lambda: next(stub.WatchEvents(pb.WatchEventsRequest(kinds=[99]))), "not an event kind"),
        ]:
            code, detail = _code(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in detail, (code, detail)
        code, _ = _code(lambda: stub.GetNode(pb.GetNodeRequest(peer_id="12D3KooW" + "1" * 44)))
        assert code == grpc.StatusCode.NOT_FOUND
        code, detail = _code(lambda: stub.GetEpoch(pb.GetEpochRequest(epoch=7)))
        assert code == grpc.StatusCode.NOT_FOUND and "not settled" in detail
        # Still serving, with the same answers.
        assert client.list_nodes().alive == 3
    assert swarm.coordinator.popen.poll() is None


def test_state_changing_calls_without_the_admin_token_are_permission_denied(swarm: Swarm) -> None:
    address = swarm.coordinator.address
    requests = {
        "PauseRun": pb.RunStateRequest(),
        "CloseRun": pb.RunStateRequest(),
        "SettleEpoch": pb.SettleEpochRequest(),
    }
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            for method, request in requests.items():
                code, detail = _code(lambda m=method, r=request, md=metadata: getattr(stub, m)(r, metadata=md))
                assert code == grpc.StatusCode.PERMISSION_DENIED and "admin token" in detail, (method, metadata)
    # Garbage bytes are refused for the token first: nothing about the request leaks to a caller without it.
    code, _ = _code(lambda: _raw_call(address, "CloseRun", b"\x0a\xff\xff"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = _code(
        lambda: _raw_call(address, "PauseRun", pb.RunStateRequest().SerializeToString(), (("authorization", "x"),))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    with swarm.client as client:
        assert client.get_run().status == "active"  # nothing changed
    with swarm.coordinator.client(admin=True) as admin:
        assert list(admin.settle().settled) == []  # the token works; no epoch has ended


def test_the_admin_commands_change_the_run_on_chain_with_the_homes_token(swarm: Swarm) -> None:
    home, address = str(swarm.coordinator.home), swarm.coordinator.address
    code, out, err = _cli("coordinator", "pause", "--home", home, "--coordinator", address, "--reason", "t", "--json")
    assert code == 0, err
    assert json.loads(out) == {"status": "paused"}
    with swarm.client as client:
        assert client.get_run().status == "paused"
        run_id = client.get_run().run_id
    assert swarm.chain.client().runs.get_run(run_id).status.name == "PAUSED"
    code, out, err = _cli("coordinator", "resume", "--home", home, "--coordinator", address)
    assert (code, out.strip()) == (0, "the run is active"), err
    code, out, err = _cli("coordinator", "settle", "--home", home, "--coordinator", address)
    assert (code, out.strip()) == (0, "no epoch has ended since the last settlement"), err


def _cli(*args: str) -> tuple[int, str, str]:
    from zoo_node.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_dashboard_frame_and_queries_show_the_run(swarm: Swarm) -> None:
    address = swarm.coordinator.address
    code, out, err = _cli("dashboard", "--coordinator", address, "--once", "--width", "200")
    assert code == 0, err
    assert "run coord-test" in out and "nodes 3 alive / 0 gone" in out and "coverage 100.0%" in out
    assert "stage/0" in out and "stage/1" in out and out.count("serving") == 3
    code, out, err = _cli("query", "nodes", "--coordinator", address, "--json")
    assert code == 0, err
    nodes = json.loads(out)
    assert {n["peer_id"] for n in nodes["nodes"]} == {n.peer_id for n in swarm.nodes}
    code, out, err = _cli("query", "run", "--coordinator", address, "--json")
    assert code == 0, err
    assert json.loads(out)["coverage"] == 1.0
    code, out, _ = _cli("query", "epochs", "--coordinator", address)
    assert code == 0 and "no epoch settled yet" in out
    code, _, err = _cli("query", "epoch", "3", "--coordinator", address)
    assert code == 2 and "NOT_FOUND" in err and "epoch 3 is not settled" in err
    code, _, err = _cli("query", "run", "--coordinator", "127.0.0.1:9")
    assert code == 2 and "no coordinator answers at 127.0.0.1:9" in err and err.count("\n") == 1


def test_reported_loss_and_mfu_form_series(swarm: Swarm) -> None:
    """The peers' heartbeats carry a loss and an MFU (Heartbeat.metrics): the run's figures are their mean, and the
    loss series follows a node whose loss drops."""

    def latest_loss(client) -> float | None:
        series = client.get_run(max_points=10_000).loss_series
        return series[-1].value if series else None

    with swarm.client as client:
        # The peers report 3.0, 2.9 and 2.8, and MFU 0.01, 0.02 and 0.03.
        wait_until(lambda: latest_loss(client) == pytest.approx(2.9), 15, "a sample with the 3 peers' mean loss")
        run = client.get_run()
        assert run.loss == pytest.approx(2.9) and run.mfu == pytest.approx(0.02)
        swarm.peers[0].set(loss=2.0)
        lower = (2.0 + 2.9 + 2.8) / 3
        wait_until(lambda: latest_loss(client) == pytest.approx(lower), 15, "the loss series to follow the drop")
        values = [p.value for p in client.get_run(max_points=10_000).loss_series]
        assert pytest.approx(2.9) in values and values[-1] == pytest.approx(lower)
        node = client.get_node(swarm.nodes[0].peer_id)
    assert node.loss == 2.0 and node.mfu == pytest.approx(0.01) and node.loss_series[-1].value == 2.0


def test_a_killed_node_shows_as_gone_and_watchers_hear_it(swarm: Swarm) -> None:
    victim = swarm.nodes[2]
    events: list[pb.Event] = []
    with swarm.client as client:
        stream = client.stub.WatchEvents(pb.WatchEventsRequest(kinds=[pb.EVENT_KIND_NODE_GONE]))

        def collect() -> None:
            with contextlib.suppress(grpc.RpcError):
                for event in stream:
                    events.append(event)

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        swarm.peers[2].kill()  # SIGKILL: no goodbye
        wait_until(lambda: any(e.peer_id == victim.peer_id for e in events), 20, "a NODE_GONE event for the victim")
        stream.cancel()
        reader.join(10)
        nodes = {n.peer_id: n for n in client.list_nodes().nodes}
        assert not nodes[victim.peer_id].alive and nodes[victim.peer_id].last_seen_age_s >= 3.0
        assert all(nodes[n.peer_id].alive for n in swarm.nodes[:2])
        run = client.get_run()
        assert (run.nodes_alive, run.nodes_gone) == (2, 1)
        shards = {s.shard: s for s in run.shards}
        assert list(shards["stage/0"].replicas) == [swarm.nodes[0].peer_id]
        assert [n.peer_id for n in client.list_nodes(alive_only=True).nodes] == sorted(
            n.peer_id for n in swarm.nodes[:2]
        )

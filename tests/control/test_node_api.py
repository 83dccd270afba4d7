"""NodeService over its unix socket and over TCP with a token; health, reflection, metrics, drain, shutdown, reload,
systemd notifications, and receipts gossiped between two in-process supervisors.
"""

from __future__ import annotations

import asyncio
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.control.joins import REPO, clean_env
from tests.control.supervisors import RUN_ID, registered, running_node
from tests.control.swarm_nodes import wait_for
from zoo_node.config import read_config_file, write_config
from zoo_node.control.sd_notify import SystemdNotifier
from zoo_node.control.status_client import NodeClient, proto_to_dict
from zoo_node.control.worker_process import DRAINED
from zoo_node.proto import node_pb2, node_pb2_grpc, worker_pb2
from zoo_node.worker.supervisor_link import SupervisorLink


def _health(channel: grpc.Channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _reflected_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    return sorted(s.name for reply in replies for s in reply.list_services_response.service)


def test_status_health_reflection_watch_drain_and_shutdown(node_home) -> None:
    home, identity = node_home

    async def scenario() -> None:
        async with running_node(home, identity, registered([node_home]), worker_mode="lifecycle") as (node, serving):
            socket_path = node.api.socket_path
            assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
            client = NodeClient.for_home(home)
            await wait_for(lambda: node.worker.state.health == worker_pb2.HEALTH_SERVING, 60, "the worker serving")
            status = proto_to_dict(await asyncio.to_thread(client.status))
            assert status["node"]["peer_id"] == identity.control_peer_id
            assert status["node"]["operator"] == identity.operator_address
            assert status["node"]["state"] == "running" and status["node"]["run_id"] == RUN_ID
            assert status["worker"]["health"] == "serving" and status["worker"]["pid"] > 0
            assert status["journal"]["path"] == str(home / "journal.sqlite3")
            assert status["node"]["metrics_url"].startswith("http://127.0.0.1:")

            text = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "zoo_node", "status", "--home", str(home)],
                cwd=REPO,
                env=clean_env({"COLUMNS": "200"}),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert text.returncode == 0, text.stderr
            assert f"running node {identity.control_peer_id}" in text.stdout and "worker: serving" in text.stdout

            channel = grpc.insecure_channel(f"unix:{socket_path}")
            assert await asyncio.to_thread(_health, channel, "zoo.node.v1.NodeService") == 1  # SERVING
            services = await asyncio.to_thread(_reflected_services, channel)
            assert "zoo.node.v1.NodeService" in services and "grpc.health.v1.Health" in services

            def two_snapshots() -> list[node_pb2.MetricsSnapshot]:
                stream = node_pb2_grpc.NodeServiceStub(channel).WatchMetrics(
                    node_pb2.WatchMetricsRequest(interval_s=0.2), timeout=10
                )
                got = [next(stream), next(stream)]
                stream.cancel()
                return got

            first, second = await asyncio.to_thread(two_snapshots)
            assert second.unix_time > first.unix_time and second.worker_health == worker_pb2.HEALTH_SERVING

            reply = await asyncio.to_thread(client.drain, "maintenance")
            assert reply.state == node_pb2.NODE_STATE_DRAINING
            # The worker finishes its work and exits; it is not restarted (a new one would only drain again).
            await wait_for(lambda: node.worker.state.detail == DRAINED, 30, "the worker to finish after the drain")
            assert node.worker.state.health == worker_pb2.HEALTH_STOPPED and node.worker.state.restarts == 0
            assert node.heartbeat().health == worker_pb2.HEALTH_DRAINING

            assert (await asyncio.to_thread(client.shutdown, "done")).state == node_pb2.NODE_STATE_STOPPING
            assert await asyncio.wait_for(serving, 60) == 0
            assert not socket_path.exists() and node.worker.state.pid == 0
            channel.close()
            client.close()

    asyncio.run(scenario())


def test_tcp_api_needs_the_token(make_home) -> None:
    home, identity = make_home("tcp")
    layer = read_config_file(home / "config.toml")
    layer["api"] = {**layer.get("api", {}), "tcp_port": 0}
    write_config(home / "config.toml", layer)

    async def scenario() -> None:
        async with running_node(home, identity, registered([(home, identity)])) as (node, _):
            token_file = home / "api.token"
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            token = token_file.read_text().strip()
            channel = grpc.insecure_channel(f"127.0.0.1:{node.api.tcp_port}")
            stub = node_pb2_grpc.NodeServiceStub(channel)

            def call(metadata):
                return stub.Status(node_pb2.StatusRequest(), metadata=metadata, timeout=5)

            def watch(metadata):
                return next(stub.WatchMetrics(node_pb2.WatchMetricsRequest(), metadata=metadata, timeout=5))

            for metadata in ((), (("authorization", "Bearer wrong"),)):
                for rpc in (call, watch):
                    with pytest.raises(grpc.RpcError) as exc:
                        await asyncio.to_thread(rpc, metadata)
                    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            good = (("authorization", f"Bearer {token}"),)
            assert (await asyncio.to_thread(call, good)).node.peer_id == identity.control_peer_id
            assert (await asyncio.to_thread(watch, good)).unix_time > 0
            channel.close()

    asyncio.run(scenario())


def test_metrics_endpoint_and_systemd_notifications(node_home, tmp_path: Path) -> None:
    home, identity = node_home
    notify_path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(10)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"})

    def fields() -> dict[str, str]:
        return dict(line.split("=", 1) for line in receiver.recv(4096).decode().splitlines())

    async def scenario() -> None:
        async with running_node(home, identity, registered([node_home]), notifier=notifier) as (node, serving):
            seen = []
            while not any(f.get("READY") == "1" for f in seen):
                seen.append(await asyncio.to_thread(fields))
            await wait_for(lambda: node.messages_out["heartbeat"] >= 1, 10, "a heartbeat sent")
            url = f"http://127.0.0.1:{node.metrics.port}/metrics"
            body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
            assert 'zoo_node_peers{state="alive"} 0.0' in body
            assert 'zoo_node_gossip_messages_dropped_total{reason="replay"} 0.0' in body
            assert 'zoo_node_gossip_messages_out_total{kind="heartbeat"}' in body
            for name in ("zoo_node_worker_restarts_total", "zoo_node_receipts", "zoo_node_steps_total", "zoo_node_mfu"):
                assert name in body
            watchdog = []
            while not watchdog:
                watchdog = [f for f in [await asyncio.to_thread(fields)] if f.get("WATCHDOG") == "1"]
            node.request_shutdown("test")
            await serving
            stopping = []
            while not stopping:
                stopping = [f for f in [await asyncio.to_thread(fields)] if f.get("STOPPING") == "1"]

    try:
        asyncio.run(scenario())
    finally:
        receiver.close()


def test_reload_applies_live_settings_and_survives_a_bad_file(node_home) -> None:
    home, identity = node_home
    config_path = home / "config.toml"

    async def scenario() -> None:
        async with running_node(home, identity, registered([node_home])) as (node, _):
            layer = read_config_file(config_path)
            layer["swarm"] = {**layer["swarm"], "peer_timeout_s": 33.0, "listen_multiaddrs": ["/ip4/127.0.0.1/tcp/9"]}
            write_config(config_path, layer)
            assert node.reload() == ["swarm.listen_multiaddrs"]  # needs a restart; the rest applies now
            assert node.membership.timeout_s == 33.0
            config_path.write_text("this is = = not toml")
            assert node.reload() == []
            assert node.config.swarm.peer_timeout_s == 33.0 and node.state == node_pb2.NODE_STATE_RUNNING

    asyncio.run(scenario())


def test_receipts_are_gossiped_to_the_other_nodes(make_home) -> None:
    a_home = make_home("a")
    b_home = make_home("b")
    directory = registered([a_home, b_home])

    async def scenario() -> None:
        async with (
            running_node(*a_home, directory, worker_mode="lifecycle") as (a, _),
            running_node(*b_home, directory, bootstrap=a.swarm.listen_multiaddrs) as (b, _),
        ):
            await wait_for(lambda: b.membership.get(a.peer_id) is not None, 20, "b to hear a")
            await wait_for(lambda: a.worker.state.health == worker_pb2.HEALTH_SERVING, 60, "a's worker serving")
            link = SupervisorLink(str(a.worker_socket), a.worker.state.incarnation)
            receipt = worker_pb2.Receipt(
                run_id=RUN_ID, shard="stage/0", round=1, members=[worker_pb2.ReceiptMember(peer_id="x", samples=2)]
            )
            receipt_id, _ = await asyncio.to_thread(link.submit_receipt, receipt)
            await wait_for(lambda: b.messages_in["receipt"] == 1, 20, "b to hear the receipt")
            counts = await a.refresh_journal_counts()
            assert (counts.receipts, counts.ungossiped) == (1, 0) and a.messages_out["receipt"] == 1
            assert receipt_id == 1
            link.close()

    asyncio.run(scenario())

"""NodeService: the node's local gRPC API (`zoo-node status` is its client), with gRPC health and reflection.

Served on a unix socket in the home (mode 0600: the file's permissions are the access control) and, when
`api.tcp_port` is set, on 127.0.0.1 behind a bearer token (`authorization: Bearer <token>` metadata; the token file
is created, mode 0600, when missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from zoo_node import __version__
from zoo_node.proto import node_pb2, node_pb2_grpc, worker_pb2

if TYPE_CHECKING:
    from zoo_node.control.supervisor import NodeSupervisor

SERVICE_NAME = node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name


def read_or_create_token(path: Path) -> str:
    """The API token in `path`, created (mode 0600) if the file does not exist."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call without `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if handler is None or hmac.compare_digest(given, self._expected):
            return handler

        async def deny_unary(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API token")

        async def deny_stream(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API token")
            yield  # pragma: no cover  (makes this an async generator)

        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(deny_stream, **kwargs)
        return grpc.unary_unary_rpc_method_handler(deny_unary, **kwargs)


def _progress_total(node: NodeSupervisor) -> tuple[int, int]:
    state = node.worker.state
    return state.total_steps, state.total_tokens


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(self, node: NodeSupervisor) -> None:
        self.node = node

    async def Status(self, request, context):
        return await build_status(self.node)

    async def WatchMetrics(self, request, context):
        interval = request.interval_s if request.interval_s > 0 else 1.0
        while not context.done():
            yield metrics_snapshot(self.node)
            await asyncio.sleep(interval)

    async def Drain(self, request, context):
        self.node.drain(request.reason or "requested through the API")
        return node_pb2.DrainReply(state=self.node.state)

    async def Shutdown(self, request, context):
        self.node.request_shutdown(request.reason or "requested through the API")
        return node_pb2.ShutdownReply(state=node_pb2.NODE_STATE_STOPPING)


async def build_status(node: NodeSupervisor) -> node_pb2.NodeStatus:
    """The whole `zoo-node status` answer."""
    connected: set[str] = set()
    if node.swarm.running:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                connected = await node.swarm.connected_peers()
    status = node_pb2.NodeStatus()
    info = status.node
    info.peer_id = node.peer_id
    info.data_peer_id = node.options.data_peer_id
    info.operator = node.options.operator
    info.version = __version__
    info.run_id = node.run_id
    info.listen_multiaddrs.extend(node.swarm.listen_multiaddrs)
    info.uptime_s = time.monotonic() - node.started_at
    info.state = node.state
    info.network = node.config.network
    if node.metrics is not None and node.metrics.port:
        info.metrics_url = f"http://127.0.0.1:{node.metrics.port}/metrics"

    worker = node.worker.state
    status.worker.health = worker.health if node.options.worker_mode != "none" else worker_pb2.HEALTH_UNSPECIFIED
    status.worker.detail = worker.detail if node.options.worker_mode != "none" else "no worker (--worker-mode none)"
    status.worker.pid = worker.pid
    status.worker.incarnation = worker.incarnation
    status.worker.restarts = worker.restarts
    status.worker.shard = worker.shard
    age = node.worker.report_age()
    status.worker.last_report_age_s = -1.0 if age is None else age
    status.worker.progress.CopyFrom(worker.progress)
    status.worker.resources.CopyFrom(worker.resources)
    if worker.next_start_at:
        status.worker.next_restart_in_s = max(0.0, worker.next_start_at - time.monotonic())
    if worker.last_exit_code is not None:
        status.worker.last_exit_code = worker.last_exit_code

    for member in node.membership.members():
        status.peers.add(
            peer_id=member.peer_id,
            operator=member.operator,
            alive=member.alive,
            last_seen_age_s=node.membership.last_seen_age(member),
            shard=member.shard,
            throughput=member.throughput,
            health=member.health,
            data_peer_id=member.data_peer_id,
            version=member.version,
            multiaddrs=member.multiaddrs,
            connected=member.peer_id in connected,
        )
    if node.journal is not None:
        counts = await node.refresh_journal_counts()
        status.journal.receipts = counts.receipts
        status.journal.unsettled = counts.unsettled
        status.journal.ungossiped = counts.ungossiped
        status.journal.path = str(node.journal.path)
    status.gossip.messages_in.update(node.messages_in)
    status.gossip.messages_out.update(node.messages_out)
    status.gossip.dropped.update(node.counters.snapshot())
    status.gossip.connected_peers = len(connected)
    status.rewards.CopyFrom(rewards_info(node.rewards, node.rewards_read_at, node.rewards_problem))
    status.rewards.account = node.reward_account
    status.rewards.run_id = node.run_id
    return status


def rewards_info(figures: dict[str, Any] | None, read_at: float | None, problem: str = "") -> node_pb2.RewardsInfo:
    """One run's `zoo-node rewards show --json` figures as the Status message carries them."""
    info = node_pb2.RewardsInfo(age_s=-1.0 if read_at is None else time.monotonic() - read_at, problem=problem)
    if figures is None:
        return info
    info.run_id = int(figures["run_id"])
    info.epoch = int(figures.get("epoch") or 0)
    info.earned_wei = str(figures["cumulative_wei"])
    info.claimed_wei = str(figures["claimed_wei"])
    info.claimable_wei = str(figures["claimable_wei"])
    info.problem = problem or (figures.get("problem") or "")
    for e in figures.get("epochs", []):
        if "problem" in e:
            info.epochs.add(epoch=int(e["epoch"]), problem=str(e["problem"]))
            continue
        info.epochs.add(
            epoch=int(e["epoch"]),
            verified_flops=str(e["verified_flops"]),
            gpu_hours=float(e["gpu_hours"]),
            cpu_hours=float(e["cpu_hours"]),
            mfu=-1.0 if e["mfu"] is None else float(e["mfu"]),
            amount_wei=str(e["amount_wei"]),
            claimed=bool(e["claimed"]),
        )
    return info


def metrics_snapshot(node: NodeSupervisor) -> node_pb2.MetricsSnapshot:
    """The numbers of WatchMetrics and /metrics (journal counts as of the last status call or receipt)."""
    alive, gone = node.membership.counts()
    worker = node.worker.state
    steps, tokens = _progress_total(node)
    return node_pb2.MetricsSnapshot(
        unix_time=time.time(),
        peers_alive=alive,
        peers_gone=gone,
        messages_in=sum(node.messages_in.values()),
        messages_out=sum(node.messages_out.values()),
        dropped=node.counters.snapshot(),
        worker_restarts=worker.restarts,
        receipts=node.receipts_total,
        receipts_unsettled=node.receipts_unsettled,
        steps=steps,
        tokens=tokens,
        tokens_per_s=worker.progress.tokens_per_s,
        mfu=worker.progress.mfu,
        worker_health=worker.health,
    )


class NodeApi:
    """The gRPC servers of NodeService: unix socket, and TCP on 127.0.0.1 with a token when configured."""

    def __init__(self, node: NodeSupervisor) -> None:
        self.node = node
        self.health = HealthServicer()
        self.socket_path: Path | None = None
        self.tcp_port: int | None = None
        self._servers: list[grpc.aio.Server] = []
        self._pending: set[asyncio.Future] = set()

    def _server(self, interceptors=()) -> grpc.aio.Server:
        server = grpc.aio.server(interceptors=list(interceptors))
        node_pb2_grpc.add_NodeServiceServicer_to_server(NodeServicer(self.node), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
        return server

    async def start(self, socket_path: Path, *, tcp_port: int | None = None, token_file: Path | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        server = self._server()
        server.add_insecure_port(f"unix:{socket_path}")
        await server.start()
        socket_path.chmod(0o600)
        self._servers.append(server)
        self.socket_path = socket_path
        if tcp_port is not None:
            assert token_file is not None
            token = read_or_create_token(token_file)
            tcp = self._server([TokenInterceptor(token)])
            self.tcp_port = tcp.add_insecure_port(f"127.0.0.1:{tcp_port}")
            await tcp.start()
            self._servers.append(tcp)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        task = asyncio.ensure_future(self.health.set(SERVICE_NAME, status))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop(1.0) for server in self._servers))
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

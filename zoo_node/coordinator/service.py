"""CoordinatorService over gRPC (asyncio), with grpc.health.v1 and server reflection.

`RequestGuard` stands in front of every CoordinatorService method:

- a state-changing (admin) method without `authorization: Bearer <admin token>` gets PERMISSION_DENIED;
- a request larger than `max_request_bytes`, or bytes that are not the method's request message, get
  INVALID_ARGUMENT with a message saying which (the request deserializer hands the servicer a `BadRequest` instead
  of raising, which gRPC would turn into an opaque INTERNAL error);

and the servicer refuses well-formed but invalid arguments (an empty PeerID, epoch 0, too many points) with
INVALID_ARGUMENT, unknown ones with NOT_FOUND. Nothing a client sends stops the server.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from zoo_node.coordinator.events import EventBus
from zoo_node.coordinator.views import DEFAULT_POINTS, MAX_POINTS
from zoo_node.errors import ZooError
from zoo_node.proto import coordinator_pb2, coordinator_pb2_grpc

SERVICE_NAME = coordinator_pb2.DESCRIPTOR.services_by_name["CoordinatorService"].full_name
ADMIN_METHODS = frozenset({"SettleEpoch", "PauseRun", "ResumeRun", "CloseRun"})
# The transport's own limit; requests between max_request_bytes and this reach the guard and get INVALID_ARGUMENT
# (above it gRPC itself answers RESOURCE_EXHAUSTED before any of our code runs).
TRANSPORT_MAX_BYTES = 16 * 1024 * 1024
MAX_REASON_CHARS = 1000
_PEER_ID = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{1,128}$")


class ApiError(ZooError):
    """The API server cannot start (bad listen address, port taken)."""


@dataclass(frozen=True)
class BadRequest:
    """What the guard's deserializer returns for bytes that are not an acceptable request."""

    reason: str


class CoordinatorBackend(Protocol):
    """What the servicer asks the running coordinator."""

    events: EventBus

    async def list_nodes(self, alive_only: bool) -> coordinator_pb2.ListNodesReply: ...

    async def get_node(self, peer_id: str, max_points: int) -> coordinator_pb2.NodeView | None: ...

    async def get_run(self, max_points: int, since_unix: float) -> coordinator_pb2.RunView: ...

    def run_spec(self) -> coordinator_pb2.RunSpecReply: ...

    async def list_epochs(self) -> coordinator_pb2.ListEpochsReply: ...

    async def get_epoch(self, epoch: int) -> coordinator_pb2.EpochView | None: ...

    async def settle_now(self) -> list[coordinator_pb2.EpochSummary]: ...

    async def set_run_state(self, action: str, reason: str) -> str: ...


def _bearer(metadata: Any) -> bytes:
    for key, value in metadata or ():
        if key == "authorization":
            return value.encode() if isinstance(value, str) else bytes(value)
    return b""


class RequestGuard(grpc.aio.ServerInterceptor):
    """Admin token and request checks for CoordinatorService (see the module docstring)."""

    def __init__(self, admin_token: str, max_request_bytes: int) -> None:
        self._expected = f"Bearer {admin_token}".encode()
        self.max_request_bytes = max_request_bytes

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or not method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        name = method.rsplit("/", 1)[-1]
        denied = name in ADMIN_METHODS and not hmac.compare_digest(
            _bearer(handler_call_details.invocation_metadata), self._expected
        )
        deserialize = handler.request_deserializer
        limit = self.max_request_bytes

        def checked(data: bytes) -> Any:
            if len(data) > limit:
                return BadRequest(f"{name}: the request is {len(data)} bytes, more than the limit of {limit}")
            try:
                return deserialize(data)
            except Exception:
                return BadRequest(f"{name}: the request is not a valid message of this method")

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            if denied:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{name} changes the run's state: it needs the coordinator's admin token "
                    "(authorization: Bearer <token>)",
                )
            if isinstance(request, BadRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                await refuse(request, context)
                return await inner(request, context)

            return handler._replace(request_deserializer=checked, unary_unary=unary)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request, context):
                await refuse(request, context)
                async for item in inner_stream(request, context):
                    yield item

            return handler._replace(request_deserializer=checked, unary_stream=stream)
        return handler


async def _invalid(context: grpc.aio.ServicerContext, message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


async def _max_points(context: grpc.aio.ServicerContext, value: int) -> int:
    if value > MAX_POINTS:
        await _invalid(context, f"max_points: {value} is more than {MAX_POINTS}")
    return value or DEFAULT_POINTS


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Thin: checks arguments, asks the backend."""

    def __init__(self, backend: CoordinatorBackend) -> None:
        self.backend = backend

    async def ListNodes(self, request, context):
        return await self.backend.list_nodes(request.alive_only)

    async def GetNode(self, request, context):
        if not _PEER_ID.match(request.peer_id):
            await _invalid(context, f"peer_id: {request.peer_id[:80]!r} is not a base58 PeerID")
        view = await self.backend.get_node(request.peer_id, await _max_points(context, request.max_points))
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"node {request.peer_id} was never heard in this run")
        return view

    async def GetRun(self, request, context):
        if not (math.isfinite(request.since_unix) and request.since_unix >= 0):
            await _invalid(context, f"since_unix: {request.since_unix} is not a time (unix seconds >= 0)")
        return await self.backend.get_run(await _max_points(context, request.max_points), request.since_unix)

    async def GetRunSpec(self, request, context):
        return self.backend.run_spec()

    async def ListEpochs(self, request, context):
        return await self.backend.list_epochs()

    async def GetEpoch(self, request, context):
        if request.epoch < 1:
            await _invalid(context, "epoch: epochs count from 1")
        view = await self.backend.get_epoch(request.epoch)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"epoch {request.epoch} is not settled")
        return view

    async def WatchEvents(self, request, context) -> AsyncIterator[coordinator_pb2.Event]:
        known = set(coordinator_pb2.EventKind.values()) - {coordinator_pb2.EVENT_KIND_UNSPECIFIED}
        unknown = [k for k in request.kinds if k not in known]
        if unknown:
            await _invalid(context, f"kinds: {unknown[0]} is not an event kind")
        events = self.backend.events
        subscription = events.subscribe(frozenset(request.kinds))
        try:
            while True:
                yield await subscription.next_event()
        finally:
            events.unsubscribe(subscription)

    async def SettleEpoch(self, request, context):
        try:
            settled = await self.backend.settle_now()
        except ZooError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return coordinator_pb2.SettleEpochReply(settled=settled)

    async def _run_state(self, action: str, request, context):
        if len(request.reason) > MAX_REASON_CHARS:
            await _invalid(context, f"reason: longer than {MAX_REASON_CHARS} characters")
        try:
            status = await self.backend.set_run_state(action, request.reason)
        except ZooError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return coordinator_pb2.RunStateReply(status=status)

    async def PauseRun(self, request, context):
        return await self._run_state("pause", request, context)

    async def ResumeRun(self, request, context):
        return await self._run_state("resume", request, context)

    async def CloseRun(self, request, context):
        return await self._run_state("close", request, context)


class CoordinatorApi:
    """The gRPC server: CoordinatorService, health and reflection on one TCP address."""

    def __init__(self, backend: CoordinatorBackend, *, admin_token: str, max_request_bytes: int) -> None:
        self.health = HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[RequestGuard(admin_token, max_request_bytes)],
            options=[
                ("grpc.max_receive_message_length", TRANSPORT_MAX_BYTES),
                ("grpc.so_reuseport", 0),  # a second coordinator must not share our port
            ],
        )
        coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorServicer(backend), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.address = ""

    async def start(self, listen: str) -> str:
        """Listen on `host:port` (port 0: a free one); returns the address it got."""
        try:
            port = self.server.add_insecure_port(listen)
        except RuntimeError as exc:
            raise ApiError(f"coordinator.listen {listen}: cannot listen: {exc}") from None
        if port == 0:
            raise ApiError(f"coordinator.listen {listen}: cannot listen there (address in use or not local?)")
        await self.server.start()
        host = listen.rsplit(":", 1)[0]
        self.address = f"{host}:{port}"
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        return self.address

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(SERVICE_NAME, status)

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.server.stop(grace_s)

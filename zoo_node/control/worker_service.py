"""WorkerService (gRPC aio) served by the supervisor to its worker, on a unix socket in the home.

Receipts are committed to the journal (in the journal's own thread) before the reply leaves: an acknowledged
receipt is durable. Calls from a worker that is not the current incarnation are refused with FAILED_PRECONDITION,
except receipts, which are work done whoever reports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from zoo_node.control.journal import JournalError, ReceiptConflict
from zoo_node.control.worker_process import StaleWorker, WorkerSupervisor
from zoo_node.proto import worker_pb2, worker_pb2_grpc

logger = logging.getLogger(__name__)

# (receipt) -> (journal id, duplicate); runs the journal write off the event loop.
AppendReceipt = Callable[[worker_pb2.Receipt], Awaitable[tuple[int, bool]]]


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self,
        supervisor: WorkerSupervisor,
        append_receipt: AppendReceipt,
        on_receipt: Callable[[int, worker_pb2.Receipt], None] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.append_receipt = append_receipt
        self.on_receipt = on_receipt

    async def Register(self, request, context):
        try:
            return self.supervisor.register(request)
        except StaleWorker as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    async def Report(self, request, context):
        try:
            self.supervisor.report(request)
        except StaleWorker as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return worker_pb2.ReportReply()

    async def SubmitReceipt(self, request, context):
        receipt = request.receipt
        if not receipt.shard or not receipt.members:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a receipt needs a shard and its group's members")
        try:
            receipt_id, duplicate = await self.append_receipt(receipt)
        except ReceiptConflict as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except JournalError as exc:
            logger.error("%s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if not duplicate and self.on_receipt is not None:
            self.on_receipt(receipt_id, receipt)
        return worker_pb2.SubmitReceiptReply(receipt_id=receipt_id, duplicate=duplicate)

    async def Commands(self, request, context):
        try:
            async for command in self.supervisor.commands(request.incarnation):
                yield command
        except StaleWorker as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except asyncio.CancelledError:
            raise


async def start_worker_server(servicer: WorkerServicer, socket_path: str) -> grpc.aio.Server:
    """Serve WorkerService on a unix socket (any stale socket file is replaced)."""
    import contextlib
    import os

    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    os.chmod(socket_path, 0o600)
    return server

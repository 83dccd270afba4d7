"""The worker's client of WorkerService (protos/zoo/node/v1/worker.proto), served by its supervisor on a unix socket.

Synchronous gRPC on purpose: the training loop is plain blocking torch code, and hivemind runs its own asyncio loops
in its own threads. Every call has a deadline; `submit_receipt` retries until the supervisor acknowledges, because
an acknowledged receipt is durable and an unacknowledged one is still the worker's to keep.

Layering: no libp2p here (grpc and psutil only).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import grpc
import psutil

from zoo_node import __version__
from zoo_node.proto import worker_pb2, worker_pb2_grpc

logger = logging.getLogger(__name__)


class SupervisorGone(RuntimeError):
    """The supervisor cannot be reached (it exited, or this worker is a stale incarnation)."""


class SupervisorLink:
    """Calls from the worker to its supervisor."""

    def __init__(self, socket_path: str, incarnation: int, *, call_timeout_s: float = 10.0) -> None:
        self.socket_path = socket_path
        self.incarnation = incarnation
        self.call_timeout_s = call_timeout_s
        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self._stub = worker_pb2_grpc.WorkerServiceStub(self._channel)

    def _call(self, method, request, timeout_s: float | None = None):
        try:
            return method(request, timeout=timeout_s or self.call_timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                raise SupervisorGone(f"the supervisor refused this worker: {exc.details()}") from None
            raise

    def register(self, data_peer_id: str, *, wait_s: float = 30.0) -> worker_pb2.RegisterReply:
        """Say hello (waiting up to `wait_s` for the supervisor's socket); returns the assignment."""
        request = worker_pb2.RegisterRequest(
            incarnation=self.incarnation, pid=os.getpid(), data_peer_id=data_peer_id, version=__version__
        )
        try:
            grpc.channel_ready_future(self._channel).result(timeout=wait_s)
            return self._call(self._stub.Register, request)
        except grpc.FutureTimeoutError:
            raise SupervisorGone(f"no supervisor at {self.socket_path} within {wait_s:.0f} s") from None
        except grpc.RpcError as exc:
            raise SupervisorGone(f"cannot register with the supervisor: {exc.details()}") from None

    def report(self, report: worker_pb2.WorkerReport) -> None:
        report.incarnation = self.incarnation
        self._call(self._stub.Report, report)

    def submit_receipt(self, receipt: worker_pb2.Receipt, *, timeout_s: float = 120.0) -> tuple[int, bool]:
        """Submit a receipt and wait for the durable acknowledgement; returns (journal id, duplicate).

        Retries transient failures until `timeout_s`; raises SupervisorGone if it never gets an answer.
        """
        request = worker_pb2.SubmitReceiptRequest(incarnation=self.incarnation, receipt=receipt)
        deadline = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            try:
                reply = self._call(self._stub.SubmitReceipt, request)
                return reply.receipt_id, reply.duplicate
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT):
                    raise ValueError(f"the supervisor rejected the receipt: {exc.details()}") from None
                if time.monotonic() + delay > deadline:
                    raise SupervisorGone(
                        f"receipt not acknowledged within {timeout_s:.0f} s: {exc.details()}"
                    ) from None
                logger.warning("receipt not acknowledged yet (%s); retrying", exc.code())
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def commands(self) -> Iterator[worker_pb2.WorkerCommand]:
        """The supervisor's commands, until it goes away (then the iterator ends)."""
        stream = self._stub.Commands(worker_pb2.CommandsRequest(incarnation=self.incarnation))
        try:
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                logger.info("command stream from the supervisor ended: %s", exc.code())
        finally:
            stream.cancel()

    def close(self) -> None:
        self._channel.close()


def snapshot_resources(exclude_sockets: tuple[str, ...] = ()) -> worker_pb2.WorkerResources:
    """The processes this worker started (all descendants, e.g. p2pd) and the unix sockets they and it listen on.

    Reported to the supervisor, which cleans them up if the worker dies without doing it itself.
    """
    me = psutil.Process()
    children = []
    sockets = set()
    try:
        descendants = me.children(recursive=True)
    except psutil.Error:
        descendants = []
    for proc in [me, *descendants]:
        try:
            for conn in proc.net_connections(kind="unix"):
                if isinstance(conn.laddr, str) and conn.laddr.startswith("/") and conn.laddr not in exclude_sockets:
                    sockets.add(conn.laddr)
        except (psutil.Error, OSError):
            continue
        if proc is not me:
            children.append(proc.pid)
    return worker_pb2.WorkerResources(child_pids=sorted(children), socket_paths=sorted(sockets))

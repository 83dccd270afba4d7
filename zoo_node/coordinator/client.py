"""The client side of CoordinatorService: what `zoo-node dashboard`, `zoo-node query` and scripts use.

The coordinator's address is `--coordinator HOST:PORT`, else `$ZOO_NODE_COORDINATOR`, else what a coordinator
running in the home wrote to `run/coordinator.addr`, else the home's `coordinator.listen`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc

from zoo_node.errors import ZooError
from zoo_node.proto import coordinator_pb2 as pb
from zoo_node.proto import coordinator_pb2_grpc

ADDRESS_ENV = "ZOO_NODE_COORDINATOR"
ADDRESS_FILE = "run/coordinator.addr"


class CoordinatorUnreachable(ZooError):
    """No coordinator answers at the address."""


class CoordinatorRefused(ZooError):
    """The coordinator refused a request (bad argument, unknown node or epoch, no admin token)."""


def coordinator_address(explicit: str | None, home: Path) -> str:
    """Where to reach the coordinator (see the module docstring)."""
    if explicit:
        return explicit
    if os.environ.get(ADDRESS_ENV):
        return os.environ[ADDRESS_ENV]
    try:
        written = (home / ADDRESS_FILE).read_text().strip()
        if written:
            return written
    except OSError:
        pass
    from zoo_node.config import load_config

    return load_config(home).coordinator.listen


class CoordinatorClient:
    """A CoordinatorService client; `admin_token` is needed only for the state-changing calls."""

    def __init__(self, address: str, *, admin_token: str | None = None, timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {admin_token}"),) if admin_token else ()
        self._channel = grpc.insecure_channel(address)
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise CoordinatorUnreachable(
                    f"no coordinator answers at {self.address} ({exc.details()}); is `zoo-node coordinator run` up?"
                ) from None
            raise CoordinatorRefused(f"{method}: {code.name}: {exc.details()}") from None

    def list_nodes(self, alive_only: bool = False) -> pb.ListNodesReply:
        return self._call("ListNodes", pb.ListNodesRequest(alive_only=alive_only))

    def get_node(self, peer_id: str, max_points: int = 0) -> pb.NodeView:
        return self._call("GetNode", pb.GetNodeRequest(peer_id=peer_id, max_points=max_points))

    def get_run(self, max_points: int = 0, since_unix: float = 0.0) -> pb.RunView:
        return self._call("GetRun", pb.GetRunRequest(max_points=max_points, since_unix=since_unix))

    def get_run_spec(self) -> pb.RunSpecReply:
        return self._call("GetRunSpec", pb.GetRunSpecRequest())

    def list_epochs(self) -> pb.ListEpochsReply:
        return self._call("ListEpochs", pb.ListEpochsRequest())

    def get_epoch(self, epoch: int) -> pb.EpochView:
        return self._call("GetEpoch", pb.GetEpochRequest(epoch=epoch))

    def settle(self) -> pb.SettleEpochReply:
        return self._call("SettleEpoch", pb.SettleEpochRequest())

    def set_run_state(self, action: str, reason: str = "") -> pb.RunStateReply:
        method = {"pause": "PauseRun", "resume": "ResumeRun", "close": "CloseRun"}[action]
        return self._call(method, pb.RunStateRequest(reason=reason))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

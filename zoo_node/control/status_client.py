"""The client side of NodeService: what `zoo-node status` (and scripts, and tests) use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from zoo_node.config import load_config, resolve_in_home
from zoo_node.errors import ZooError
from zoo_node.proto import node_pb2, node_pb2_grpc

_INT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}


class NodeUnreachable(ZooError):
    """No node answers on the home's API socket."""


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return proto_to_dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        name = field.enum_type.values_by_number.get(value)
        if name is None:
            return value
        prefix = "".join("_" + c if c.isupper() else c for c in field.enum_type.name).lstrip("_").upper() + "_"
        return name.name.removeprefix(prefix).lower()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    if field.type in _INT_TYPES:
        return int(value)
    return value


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf 6.32+ has `is_repeated` and deprecates `label`.
    if hasattr(type(field), "is_repeated"):
        return bool(field.is_repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def proto_to_dict(message: Message) -> dict[str, Any]:
    """Every field (defaults included) as plain JSON types: ints stay ints, enums become lower-case names."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v) for k, v in sorted(value.items())}
        elif _is_repeated(field):
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def api_socket(home: Path) -> Path:
    return resolve_in_home(home, load_config(home).api.socket)


class NodeClient:
    """A NodeService client over the home's unix socket."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self.stub = node_pb2_grpc.NodeServiceStub(self._channel)

    @classmethod
    def for_home(cls, home: Path, **kwargs: Any) -> NodeClient:
        return cls(api_socket(home), **kwargs)

    def _unreachable(self, exc: grpc.RpcError) -> NodeUnreachable:
        if not self.socket_path.exists():
            return NodeUnreachable(
                f"no node is running here: {self.socket_path} does not exist (start `zoo-node join`)"
            )
        return NodeUnreachable(f"the node at {self.socket_path} does not answer: {exc.details()}")

    def status(self) -> node_pb2.NodeStatus:
        try:
            return self.stub.Status(node_pb2.StatusRequest(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._unreachable(exc) from None

    def drain(self, reason: str = "") -> node_pb2.DrainReply:
        try:
            return self.stub.Drain(node_pb2.DrainRequest(reason=reason), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._unreachable(exc) from None

    def shutdown(self, reason: str = "") -> node_pb2.ShutdownReply:
        try:
            return self.stub.Shutdown(node_pb2.ShutdownRequest(reason=reason), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._unreachable(exc) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

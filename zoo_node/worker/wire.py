"""The data plane's wire format: tensors and a small msgpack header in hivemind's `ExpertRequest`/`ExpertResponse`.

Messages are streamed in parts of at most `PART_BYTES`: p2pd refuses messages above 4 MiB, so a tensor is split
(hivemind's `split_for_streaming`) and the first message of a stream carries the header. Received tensors are checked
against what the receiver expects (`TensorCheck`) before they touch a model: shape, dtype and finiteness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hivemind.compression import deserialize_torch_tensor, serialize_torch_tensor
from hivemind.proto import runtime_pb2
from hivemind.utils.serializer import MSGPackSerializer
from hivemind.utils.streaming import combine_from_streaming, split_for_streaming

from zoo_node.errors import ZooError

# Below p2pd's 4 MiB message cap with room for the protobuf envelope.
PART_BYTES = 2 * 1024 * 1024


class IncompleteMessage(ZooError):
    """A streamed message ended before all its tensors arrived (the stream was closed early)."""


class BadTensorError(ZooError):
    """A peer sent a tensor of the wrong shape or dtype, or with NaN/Inf values."""


def encode(tensors: Sequence[torch.Tensor], header: dict[str, Any]) -> list[runtime_pb2.ExpertRequest]:
    """Tensors and a header as a stream of requests (the header rides on the first)."""
    parts: list[runtime_pb2.Tensor] = []
    for tensor in tensors:
        serialized = serialize_torch_tensor(tensor.detach().cpu().contiguous())
        parts.extend(split_for_streaming(serialized, PART_BYTES))
    # The count lets the receiver tell a complete message from one whose stream was cut short (hivemind ends a
    # stream quietly when p2pd closes it early).
    meta = MSGPackSerializer.dumps({**header, "n_tensors": len(tensors)})
    if not parts:
        return [runtime_pb2.ExpertRequest(metadata=meta)]
    messages, size, batch = [], 0, []
    for part in parts:
        if batch and size + len(part.buffer) > PART_BYTES:
            messages.append(batch)
            batch, size = [], 0
        batch.append(part)
        size += len(part.buffer)
    messages.append(batch)
    out = [runtime_pb2.ExpertRequest(tensors=batch) for batch in messages]
    out[0].metadata = meta
    return out


def encode_response(tensors: Sequence[torch.Tensor], header: dict[str, Any]) -> list[runtime_pb2.ExpertResponse]:
    return [runtime_pb2.ExpertResponse(tensors=m.tensors, metadata=m.metadata) for m in encode(tensors, header)]


def single_response(tensors: Sequence[torch.Tensor], header: dict[str, Any]) -> runtime_pb2.ExpertResponse:
    """One response message; `TooLargeForOneMessage` if the tensors need streaming."""
    messages = encode_response(tensors, header)
    if len(messages) != 1:
        raise TooLargeForOneMessage(f"the response needs {len(messages)} messages; use the streaming RPC")
    return messages[0]


class TooLargeForOneMessage(ZooError):
    """A unary RPC's result does not fit in one p2pd message: the caller retries with the streaming RPC."""


def _decode_parts(parts: Iterable[runtime_pb2.Tensor]) -> list[torch.Tensor]:
    tensors, pending = [], []
    for part in parts:
        if part.dtype and pending:  # a part with a dtype starts the next tensor
            tensors.append(deserialize_torch_tensor(combine_from_streaming(pending)))
            pending = []
        pending.append(part)
    if pending:
        tensors.append(deserialize_torch_tensor(combine_from_streaming(pending)))
    return tensors


def decode(messages: Iterable[runtime_pb2.ExpertRequest | runtime_pb2.ExpertResponse]) -> tuple[list, dict]:
    header: dict[str, Any] = {}
    parts: list[runtime_pb2.Tensor] = []
    for message in messages:
        if message.metadata and not header:
            header = MSGPackSerializer.loads(message.metadata)
        parts.extend(message.tensors)
    if not isinstance(header, dict):
        raise BadTensorError("the message header is not a map")
    tensors = _decode_parts(parts)
    expected = header.pop("n_tensors", None)
    if expected is not None and expected != len(tensors):
        raise IncompleteMessage(f"got {len(tensors)} of the {expected} tensors the message announced")
    return tensors, header


async def decode_stream(stream: AsyncIterator) -> tuple[list[torch.Tensor], dict[str, Any]]:
    return decode([message async for message in stream])


@dataclass(frozen=True)
class TensorCheck:
    """What one tensor must look like: dtype, rank, and fixed sizes (None: any size, e.g. the batch dimension)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int | None, ...]
    finite: bool = True

    def check(self, tensor: torch.Tensor) -> None:
        if tensor.dtype != self.dtype:
            raise BadTensorError(f"{self.name}: dtype {tensor.dtype}, expected {self.dtype}")
        if tensor.dim() != len(self.shape) or any(
            want is not None and got != want for got, want in zip(tensor.shape, self.shape, strict=True)
        ):
            raise BadTensorError(f"{self.name}: shape {tuple(tensor.shape)}, expected {self.shape}")
        if self.finite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadTensorError(f"{self.name}: contains NaN or Inf")


def check_tensors(tensors: Sequence[torch.Tensor], checks: Sequence[TensorCheck]) -> None:
    """Raise `BadTensorError` unless `tensors` match `checks` one for one."""
    if len(tensors) != len(checks):
        raise BadTensorError(f"got {len(tensors)} tensors, expected {len(checks)} ({[c.name for c in checks]})")
    for tensor, check in zip(tensors, checks, strict=True):
        check.check(tensor)

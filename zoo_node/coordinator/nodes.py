"""Who a receipt's PeerIDs are: data-plane PeerIDs bound to control-plane PeerIDs, and those to registered nodes.

A worker's data-plane PeerID is bound to its node by a `SignedWorkerBinding` (signed by the node's control key,
gossiped in its heartbeats); the node is registered on chain under its control PeerID with an owner (who is paid)
and the hardware it declared (which bounds what it can have computed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from zoo_node.peaks import CPU_PEAK_CEILING_FLOPS, MAX_GPU_PEAK_FLOPS, normalise_gpu_name, table_peak_flops

if TYPE_CHECKING:
    from zoo_node.chain.node_registry import NodeRegistryClient
    from zoo_node.proto import gossip_pb2


@dataclass(frozen=True)
class RegisteredNode:
    """A node registered on chain (active, and in the run) as settlement sees it."""

    control_peer_id: str
    owner: str
    gpu_model: str = "cpu"
    gpu_count: int = 0

    @property
    def is_cpu(self) -> bool:
        return self.gpu_count <= 0 or self.gpu_model.strip().lower() in ("", "cpu")

    @property
    def peak_flops(self) -> float:
        """The most FLOP/s this node's declared hardware can do: the table's peak x GPUs; a GPU model the table does
        not know gets the fastest peak in the table; a CPU node the CPU ceiling."""
        if self.is_cpu:
            return CPU_PEAK_CEILING_FLOPS
        peak = table_peak_flops(self.gpu_model)
        return (peak if peak is not None else MAX_GPU_PEAK_FLOPS) * self.gpu_count

    @property
    def peak_source(self) -> str:
        if self.is_cpu:
            return "cpu-ceiling"
        return "table" if normalise_gpu_name(self.gpu_model) else "gpu-ceiling"

    @property
    def hardware(self) -> str:
        return "cpu" if self.is_cpu else f"{self.gpu_model} x{self.gpu_count}"


class NodeDirectory(Protocol):
    """What settlement asks about PeerIDs."""

    def node(self, control_peer_id: str) -> RegisteredNode | None:
        """The registered, active node of the run with this control PeerID, or None."""
        ...

    def control_of(self, data_peer_id: str) -> str | None:
        """The control PeerID a data-plane PeerID is bound to, or None."""
        ...

    def workers_of(self, control_peer_id: str) -> set[str]:
        """The data-plane PeerIDs bound to a control PeerID."""
        ...


class WorkerBindings:
    """data-plane PeerID -> control PeerID, fed only with bindings whose control-key signature verified."""

    def __init__(self, verified: Mapping[str, str] | None = None) -> None:
        self._control: dict[str, str] = dict(verified or {})

    def add_signed(self, signed: gossip_pb2.SignedWorkerBinding, control_peer_id: str, run_id: int) -> str:
        """Verify a binding gossiped by `control_peer_id` and record it; returns the data-plane PeerID.

        Raises `zoo_node.control.messages.MessageError` when it does not verify.
        """
        from zoo_node.control.messages import verify_worker_binding

        binding = verify_worker_binding(signed, control_peer_id, run_id)
        self._control[binding.data_peer_id] = control_peer_id
        return binding.data_peer_id

    def add_verified(self, data_peer_id: str, control_peer_id: str) -> None:
        """Record a binding that was already verified (e.g. by the control plane's gossip guard)."""
        self._control[data_peer_id] = control_peer_id

    def control_of(self, data_peer_id: str) -> str | None:
        return self._control.get(data_peer_id)

    def workers_of(self, control_peer_id: str) -> set[str]:
        return {d for d, c in self._control.items() if c == control_peer_id}

    def items(self) -> Iterable[tuple[str, str]]:
        return self._control.items()


class StaticNodeDirectory:
    """A directory over a fixed set of nodes (a snapshot of the chain, or tools and tests that have no chain)."""

    def __init__(self, nodes: Iterable[RegisteredNode], bindings: WorkerBindings) -> None:
        self._nodes = {n.control_peer_id: n for n in nodes}
        self.bindings = bindings

    def node(self, control_peer_id: str) -> RegisteredNode | None:
        return self._nodes.get(control_peer_id)

    def control_of(self, data_peer_id: str) -> str | None:
        return self.bindings.control_of(data_peer_id)

    def workers_of(self, control_peer_id: str) -> set[str]:
        return self.bindings.workers_of(control_peer_id)


class ChainNodeDirectory:
    """Nodes read from the NodeRegistry: active (status and stake) and, if `require_joined`, joined to the run.

    Answers are cached for the life of the object: make one per settlement.
    """

    def __init__(
        self, registry: NodeRegistryClient, run_id: int, bindings: WorkerBindings, *, require_joined: bool = True
    ) -> None:
        self.registry = registry
        self.run_id = run_id
        self.bindings = bindings
        self.require_joined = require_joined
        self._cache: dict[str, RegisteredNode | None] = {}

    def node(self, control_peer_id: str) -> RegisteredNode | None:
        if control_peer_id not in self._cache:
            self._cache[control_peer_id] = self._lookup(control_peer_id)
        return self._cache[control_peer_id]

    def _lookup(self, control_peer_id: str) -> RegisteredNode | None:
        info = self.registry.get_node(control_peer_id)
        if info is None or info.peer_id != control_peer_id or not self.registry.is_active(info.node_id):
            return None
        if self.require_joined and not self.registry.joined_run(info.node_id, self.run_id):
            return None
        return RegisteredNode(control_peer_id, info.owner, info.hardware.gpu_model, info.hardware.gpu_count)

    def control_of(self, data_peer_id: str) -> str | None:
        return self.bindings.control_of(data_peer_id)

    def workers_of(self, control_peer_id: str) -> set[str]:
        return self.bindings.workers_of(control_peer_id)

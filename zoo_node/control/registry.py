"""What the control plane needs to know from the chain, behind a small interface.

`NodeDirectory` answers "which control PeerIDs are registered, with which multiaddrs" and "which runs are active".
`ChainDirectory` (zoo_node.control.chain_link) answers from the NodeRegistry and RunRegistry contracts;
`StaticDirectory` from a fixed list (a network without a chain, and benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RegisteredNode:
    """A node registered (and active) on chain."""

    peer_id: str
    operator: str
    multiaddrs: tuple[str, ...] = ()


class NodeDirectory(Protocol):
    def registered_nodes(self) -> list[RegisteredNode]:
        """Every active registered node (blocking; call it off the event loop)."""
        ...

    def active_run_ids(self) -> list[int]:
        """Runs that are active now."""
        ...

    def settled_until(self, run_id: int) -> float | None:
        """Unix time at which the run's last settled epoch ended (None: nothing settled yet)."""
        ...

    def rewards(self, run_id: int, account: str) -> dict[str, Any] | None:
        """`account`'s rewards in the run as `zoo-node rewards show --json` gives one run (None: no chain here)."""
        ...


class StaticDirectory:
    """A fixed directory: the given nodes are registered, the given runs active."""

    def __init__(self, nodes: Iterable[RegisteredNode], runs: Iterable[int] = ()) -> None:
        self.nodes = list(nodes)
        self.runs = list(runs)

    def registered_nodes(self) -> list[RegisteredNode]:
        return list(self.nodes)

    def active_run_ids(self) -> list[int]:
        return list(self.runs)

    def settled_until(self, run_id: int) -> float | None:
        return None

    def rewards(self, run_id: int, account: str) -> dict[str, Any] | None:
        return None


def dialable(node: RegisteredNode) -> list[str]:
    """The node's multiaddrs in the form a host dials: each ending in /p2p/<its PeerID>."""
    suffix = f"/p2p/{node.peer_id}"
    addrs = []
    for addr in node.multiaddrs:
        if "/p2p/" in addr:
            if addr.endswith(suffix):
                addrs.append(addr)
        else:
            addrs.append(addr.rstrip("/") + suffix)
    return addrs

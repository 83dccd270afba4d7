"""In-process `NodeSupervisor`s for tests: the start-up steps of `zoo-node join` without the chain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from zoo_node.config import load_config
from zoo_node.control.messages import ControlKey
from zoo_node.control.registry import RegisteredNode, StaticDirectory
from zoo_node.control.sd_notify import SystemdNotifier
from zoo_node.control.supervisor import NodeOptions, NodeSupervisor
from zoo_node.identity import PublicIdentity, load_control_seed

RUN_ID = 11


def registered(homes: list[tuple[Path, PublicIdentity]]) -> StaticDirectory:
    nodes = [RegisteredNode(identity.control_peer_id, identity.operator_address) for _, identity in homes]
    return StaticDirectory(nodes, runs=[RUN_ID])


@contextlib.asynccontextmanager
async def running_node(
    home: Path,
    identity: PublicIdentity,
    directory: StaticDirectory,
    *,
    worker_mode: str = "none",
    notifier: SystemdNotifier | None = None,
    flags: dict[str, Any] | None = None,
    bootstrap: list[str] | None = None,
) -> AsyncIterator[tuple[NodeSupervisor, asyncio.Task]]:
    """A node up and serving; yields it and its `serve()` task (done once it shut down)."""
    config = load_config(home, flags or {})
    node = NodeSupervisor(
        NodeOptions(
            home=home,
            config=config,
            run_id=RUN_ID,
            control_key=ControlKey.from_seed(load_control_seed(home)),
            operator=identity.operator_address,
            data_peer_id=identity.data_peer_id,
            directory=directory,
            config_flags=flags or {},
            extra_bootstrap=bootstrap or [],
            worker_mode=worker_mode,
        ),
        notifier=notifier or SystemdNotifier({}),
    )
    try:
        await node.start_api()
        await node.open_journal()
        await node.start_swarm()
        await node.refresh_registry()
        await node.bootstrap()
        await node.start_worker_service()
        node.start_background()
        node.mark_ready()
    except BaseException:
        await node.close()
        raise
    serving = asyncio.create_task(node.serve(stop_bound_s=30))
    try:
        yield node, serving
    finally:
        node.request_shutdown("test over")
        await serving

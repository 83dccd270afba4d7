"""`python -m zoo_node.worker`: the worker process that `zoo-node join` spawns.

`--mode full` (the default) is the node's real work. Until the data plane plugs its training in (a work function
for `zoo_node.worker.lifecycle.run_worker`), it runs the lifecycle with a real hivemind p2pd started with the home's
data-plane key (so the node's data PeerID is live and the supervisor has a real p2pd to clean up). `--mode lifecycle`
runs the lifecycle only (register, report, follow drain/stop), with no p2pd: for tests and debugging.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from pathlib import Path

from zoo_node.identity import KeyPaths, load_public_identity
from zoo_node.logs import configure_logging
from zoo_node.proto import worker_pb2
from zoo_node.worker.lifecycle import WorkerContext, run_worker

logger = logging.getLogger("zoo_node.worker")


def _start_p2pd(ctx: WorkerContext, host_multiaddrs: list[str]) -> tuple[asyncio.AbstractEventLoop, object]:
    """Start hivemind's P2P (a p2pd child process) on its own asyncio loop thread."""
    from hivemind.p2p import P2P

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="zoo-worker-p2p", daemon=True).start()
    identity = str(KeyPaths.of(ctx.home).data_key)
    create = P2P.create(
        identity_path=identity, host_maddrs=host_multiaddrs, check_if_identity_free=False, startup_timeout=60
    )
    p2p = asyncio.run_coroutine_threadsafe(create, loop).result(timeout=90)
    maddrs = asyncio.run_coroutine_threadsafe(p2p.get_visible_maddrs(), loop).result(timeout=30)
    ctx.set_data_multiaddrs([str(m) for m in maddrs])
    return loop, p2p


def lifecycle_only(ctx: WorkerContext, *, p2pd: bool, host_multiaddrs: list[str]) -> None:
    """The placeholder work: hold the assignment, serve nothing, until drained (then return) or stopped."""
    p2p = loop = None
    if p2pd:
        loop, p2p = _start_p2pd(ctx, host_multiaddrs)
    ctx.set_health(worker_pb2.HEALTH_SERVING, "lifecycle only (no training plugged in)")
    try:
        while not ctx.drain.is_set():
            ctx.wait(1.0)
        ctx.set_health(worker_pb2.HEALTH_DRAINING)
    finally:
        if p2p is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(p2p.shutdown(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo_node.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--supervisor-socket", required=True, help="unix socket of the supervisor's WorkerService")
    parser.add_argument("--incarnation", type=int, required=True)
    parser.add_argument(
        "--mode",
        choices=("full", "lifecycle"),
        default="full",
        help="full: the node's work; lifecycle: register/report/drain only",
    )
    parser.add_argument("--run-spec", type=Path, default=None, help="train this run (the data plane's work)")
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from zoo_node.config import load_config

    config = load_config(args.home)
    identity = load_public_identity(args.home)

    def work(ctx: WorkerContext) -> None:
        if args.run_spec is not None and args.mode == "full":  # the data plane trains the run
            from zoo_node.worker.work import training_work

            return training_work(args.run_spec, config)(ctx)
        return lifecycle_only(ctx, p2pd=args.mode == "full", host_multiaddrs=config.worker.host_multiaddrs)

    return run_worker(
        work,
        home=args.home,
        socket_path=args.supervisor_socket,
        incarnation=args.incarnation,
        data_peer_id=identity.data_peer_id,
    )


if __name__ == "__main__":
    sys.exit(main())

"""The supervisor's side of the worker lifecycle against real `python -m zoo_node.worker` subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.control.swarm_nodes import wait_for
from zoo_node.control.journal import ReceiptJournal
from zoo_node.control.worker_process import WorkerSpec, WorkerSupervisor
from zoo_node.control.worker_service import WorkerServicer, start_worker_server
from zoo_node.proto import worker_pb2
from zoo_node.worker.supervisor_link import SupervisorGone, SupervisorLink

SERVING = worker_pb2.HEALTH_SERVING


@contextlib.asynccontextmanager
async def supervised_worker(home: Path, **spec_fields) -> AsyncIterator[tuple[WorkerSupervisor, ReceiptJournal]]:
    journal = ReceiptJournal(home / "journal.sqlite3")
    spec = WorkerSpec(
        home=home,
        socket_path=home / "w.sock",
        run_id=3,
        shard="stage/1",
        extra_args=["--mode", "lifecycle"],
        **spec_fields,
    )
    supervisor = WorkerSupervisor(spec)

    async def append(receipt):
        return await asyncio.to_thread(journal.append, receipt)

    server = await start_worker_server(WorkerServicer(supervisor, append), str(spec.socket_path))
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor, journal
    finally:
        await supervisor.stop("test over")
        await task
        await server.stop(0.5)
        journal.close()


async def serving(supervisor: WorkerSupervisor, incarnation: int, timeout_s: float = 60.0) -> None:
    await wait_for(
        lambda: supervisor.state.incarnation == incarnation and supervisor.state.health == SERVING,
        timeout_s,
        f"worker {incarnation} serving",
    )


def test_worker_registers_reports_and_stops_cleanly(node_home) -> None:
    home, _ = node_home

    async def scenario() -> None:
        async with supervised_worker(home, report_timeout_s=20) as (supervisor, _):
            await serving(supervisor, 1)
            pid = supervisor.state.pid
            assert supervisor.state.shard == "stage/1"  # the assignment's shard, reported back
            assert supervisor.footprint_path.exists()
        assert supervisor.state.last_exit_code == 0  # it obeyed the Stop command
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not supervisor.footprint_path.exists()
        assert supervisor.state.restarts == 0

    asyncio.run(scenario())


def test_a_killed_worker_is_restarted_after_the_backoff_and_cleaned_up(node_home) -> None:
    home, _ = node_home

    async def scenario() -> None:
        # backoff_max_s also sets how long a run must last to reset the backoff: longer than this test.
        async with supervised_worker(home, backoff_initial_s=0.5, backoff_max_s=120) as (supervisor, _):
            await serving(supervisor, 1)
            scratch = supervisor.spec.temp_dir / "scratch.bin"
            scratch.write_bytes(b"left behind")
            os.kill(supervisor.state.pid, signal.SIGKILL)
            await wait_for(lambda: supervisor.state.restarts == 1, 30, "the restart to be scheduled")
            assert supervisor.state.last_exit_code == -signal.SIGKILL
            assert not scratch.exists()  # its temp dir was wiped
            await serving(supervisor, 2)
            # A second crash soon after waits twice as long.
            os.kill(supervisor.state.pid, signal.SIGKILL)
            await wait_for(lambda: supervisor.state.restarts == 2, 30, "the second restart")
            assert supervisor._backoff.attempt == 2
            await serving(supervisor, 3)

    asyncio.run(scenario())


def test_a_worker_that_stops_reporting_is_killed_and_restarted(node_home) -> None:
    home, _ = node_home

    async def scenario() -> None:
        async with supervised_worker(home, report_timeout_s=5.0, backoff_initial_s=0.2) as (supervisor, _):
            await serving(supervisor, 1)
            frozen = supervisor.state.pid
            os.kill(frozen, signal.SIGSTOP)  # alive, but silent
            await wait_for(lambda: supervisor.state.restarts == 1, 30, "the hung worker to be killed")
            assert supervisor.state.last_exit_code == -signal.SIGKILL
            assert not psutil.pid_exists(frozen) or psutil.Process(frozen).status() == psutil.STATUS_ZOMBIE
            await serving(supervisor, 2)

    asyncio.run(scenario())


def test_receipts_are_journaled_before_the_acknowledgement(node_home) -> None:
    home, _ = node_home

    async def scenario() -> None:
        async with supervised_worker(home) as (supervisor, journal):
            await serving(supervisor, 1)
            link = SupervisorLink(str(supervisor.spec.socket_path), incarnation=supervisor.state.incarnation)
            receipt = worker_pb2.Receipt(
                run_id=3, shard="stage/1", round=7, members=[worker_pb2.ReceiptMember(peer_id="p", samples=1)], tokens=9
            )
            receipt_id, duplicate = await asyncio.to_thread(link.submit_receipt, receipt)
            assert not duplicate and journal.get(receipt_id) == receipt
            assert await asyncio.to_thread(link.submit_receipt, receipt) == (receipt_id, True)
            receipt.tokens = 10
            with pytest.raises(ValueError, match="different receipt"):
                await asyncio.to_thread(link.submit_receipt, receipt)
            with pytest.raises(ValueError, match="members"):
                await asyncio.to_thread(link.submit_receipt, worker_pb2.Receipt(run_id=3, shard="stage/1", round=8))
            # A stale incarnation may not register.
            stale = SupervisorLink(str(supervisor.spec.socket_path), incarnation=99)
            with pytest.raises(SupervisorGone, match="refused"):
                await asyncio.to_thread(stale.register, "data", wait_s=5)
            link.close()
            stale.close()

    asyncio.run(scenario())

"""Prometheus metrics of the node on 127.0.0.1 (`api.metrics_port`; 0 picks a free port, read back in `port`).

One collector reads the supervisor's state at scrape time (on the event loop, so it never sees a half-updated
state): the same numbers as `zoo-node status` and WatchMetrics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from zoo_node.control.supervisor import NodeSupervisor

logger = logging.getLogger(__name__)
PREFIX = "zoo_node"


class NodeCollector(Collector):
    def __init__(self, node: NodeSupervisor, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.loop = loop

    def _snapshot(self):
        from zoo_node.control.node_service import metrics_snapshot

        async def take():
            return metrics_snapshot(self.node), dict(self.node.messages_in), dict(self.node.messages_out)

        return asyncio.run_coroutine_threadsafe(take(), self.loop).result(timeout=5)

    def collect(self):
        try:
            snap, messages_in, messages_out = self._snapshot()
        except Exception as exc:  # the loop is busy or closed: serve nothing rather than fail the scrape
            logger.debug("metrics snapshot failed: %s", exc)
            return
        peers = GaugeMetricFamily(f"{PREFIX}_peers", "Nodes of the run in the membership view.", labels=["state"])
        peers.add_metric(["alive"], snap.peers_alive)
        peers.add_metric(["gone"], snap.peers_gone)
        yield peers
        received = CounterMetricFamily(
            f"{PREFIX}_gossip_messages_in", "Gossip messages accepted, by topic kind.", labels=["kind"]
        )
        for kind, count in sorted(messages_in.items()):
            received.add_metric([kind], count)
        yield received
        sent = CounterMetricFamily(
            f"{PREFIX}_gossip_messages_out", "Gossip messages published, by kind.", labels=["kind"]
        )
        for kind, count in sorted(messages_out.items()):
            sent.add_metric([kind], count)
        yield sent
        dropped = CounterMetricFamily(
            f"{PREFIX}_gossip_messages_dropped", "Gossip messages dropped, by reason.", labels=["reason"]
        )
        for reason, count in sorted(snap.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            f"{PREFIX}_worker_restarts", "Restarts of the worker process.", value=snap.worker_restarts
        )
        yield GaugeMetricFamily(f"{PREFIX}_receipts", "Receipts in the journal.", value=snap.receipts)
        yield GaugeMetricFamily(
            f"{PREFIX}_receipts_unsettled",
            "Journaled receipts not yet settled on chain.",
            value=snap.receipts_unsettled,
        )
        yield CounterMetricFamily(f"{PREFIX}_steps", "Training steps, all worker incarnations.", value=snap.steps)
        yield CounterMetricFamily(f"{PREFIX}_tokens", "Tokens processed, all worker incarnations.", value=snap.tokens)
        yield GaugeMetricFamily(f"{PREFIX}_tokens_per_second", "Recent worker throughput.", value=snap.tokens_per_s)
        yield GaugeMetricFamily(f"{PREFIX}_mfu", "Recent model FLOPs utilisation of the worker (0..1).", value=snap.mfu)
        yield GaugeMetricFamily(
            f"{PREFIX}_worker_health", "Worker health (zoo.node.v1.Health).", value=snap.worker_health
        )


class MetricsServer:
    """/metrics over HTTP on 127.0.0.1 with the node's own registry (never the process-global one)."""

    def __init__(self, node: NodeSupervisor, loop: asyncio.AbstractEventLoop) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node, loop))
        self.port: int | None = None
        self._server = None
        self._thread = None

    def start(self, port: int) -> int:
        self._server, self._thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self.port = self._server.server_port
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

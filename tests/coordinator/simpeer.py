"""A control-plane peer of a run for the coordinator's tests, in its own process: `python -m tests.coordinator.simpeer`.

It is a real py-libp2p host (zoo_node.control's SwarmThread and GossipGuard) with a node home's real control key:
it dials the given peers, publishes signed heartbeats (with the worker binding signed by its control key) at an
interval, and announces the receipts it is handed, exactly as a `zoo-node join` supervisor does. What it does not do
is run a worker: the test sets its shard, throughput and (when the gossip schema carries them) loss and MFU, and
hands it receipts co-signed with real data-plane keys.

It runs in its own process because py-libp2p and hivemind cannot share one (duplicate protobuf symbols), and the
test process may have imported hivemind.

Commands, one JSON object per line on stdin:
    {"cmd": "set", "shard": "stage/0", "throughput": 100.0, "loss": 2.5, "mfu": 0.1}
    {"cmd": "receipt", "blob": "<base64 of a serialized zoo.node.v1.Receipt>"}
    {"cmd": "dial", "addr": "/ip4/.../p2p/..."}
    {"cmd": "stop"}
Events, one JSON object per line on stdout: {"event": "ready", "peer_id": ..., "addrs": [...]},
{"event": "announced", "count": n}, {"event": "error", "detail": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

from zoo_node.control.guard import GossipGuard
from zoo_node.control.messages import ControlKey, MonotonicMillis, encode_envelope, sign_worker_binding
from zoo_node.control.swarm import SwarmSettings
from zoo_node.control.swarm_thread import SwarmThread
from zoo_node.control.topics import HEARTBEAT, RECEIPT, RunTopics
from zoo_node.identity import load_control_seed, load_public_identity
from zoo_node.proto import gossip_pb2, worker_pb2

# Gossipsub drops more than 10 messages a second from one peer on one topic: announce slower than that.
RECEIPT_PAUSE_S = 0.15


def _emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class SimPeer:
    def __init__(self, home: Path, run_id: int, interval_s: float) -> None:
        self.key = ControlKey.from_seed(load_control_seed(home))
        self.identity = load_public_identity(home)
        self.run_id = run_id
        self.topics = RunTopics(run_id)
        self.interval_s = interval_s
        self.clock = MonotonicMillis()
        self.figures: dict[str, object] = {"shard": "", "throughput": 0.0}
        self.announced = 0
        guard = GossipGuard(self.topics, max_message_bytes=64 * 1024, max_age_s=120)
        guard.set_registered([self.key.peer_id])
        self.swarm = SwarmThread(
            SwarmSettings(self.key.private.private_bytes_raw(), ["/ip4/127.0.0.1/tcp/0"], self.topics.all()),
            guard,
            lambda accepted: None,
        )

    def heartbeat(self) -> gossip_pb2.Heartbeat:
        heartbeat = gossip_pb2.Heartbeat(
            operator=self.identity.operator_address,
            shard=str(self.figures["shard"]),
            throughput=float(self.figures["throughput"]),
            health=worker_pb2.HEALTH_SERVING,
            version="sim",
            multiaddrs=self.swarm.listen_multiaddrs,
            interval_ms=int(self.interval_s * 1000),
        )
        heartbeat.worker.CopyFrom(sign_worker_binding(self.key, self.run_id, self.identity.data_peer_id))
        fields = heartbeat.DESCRIPTOR.fields_by_name
        if "metrics" in fields:  # the worker's figures, where the gossip schema carries them
            for name in ("loss", "mfu"):
                if self.figures.get(name) is not None:
                    heartbeat.metrics[name] = float(self.figures[name])
        return heartbeat

    async def publish(self, kind: str, **body: object) -> None:
        data = encode_envelope(self.key.peer_id, self.run_id, self.clock(), **body)
        await self.swarm.publish(self.topics.topic(kind), data)

    async def heartbeats(self) -> None:
        while True:
            try:
                await self.publish(HEARTBEAT, heartbeat=self.heartbeat())
            except Exception as exc:
                _emit(event="error", detail=f"heartbeat: {exc}")
            await asyncio.sleep(self.interval_s)

    async def handle(self, command: dict) -> bool:
        cmd = command.get("cmd")
        if cmd == "set":
            self.figures.update({k: v for k, v in command.items() if k != "cmd"})
            await self.publish(HEARTBEAT, heartbeat=self.heartbeat())
        elif cmd == "receipt":
            receipt = worker_pb2.Receipt.FromString(base64.b64decode(command["blob"]))
            await self.publish(RECEIPT, receipt=gossip_pb2.ReceiptAnnouncement(receipt=receipt, journal_id=1))
            self.announced += 1
            _emit(event="announced", count=self.announced)
            await asyncio.sleep(RECEIPT_PAUSE_S)
        elif cmd == "dial":
            await self.swarm.dial(command["addr"])
            _emit(event="dialed", addr=command["addr"])
        elif cmd == "stop":
            return False
        return True

    async def run(self, dial: list[str]) -> None:
        await self.swarm.start()
        for addr in dial:
            await self.swarm.dial(addr)
        task = asyncio.create_task(self.heartbeats())
        _emit(event="ready", peer_id=self.key.peer_id, addrs=self.swarm.listen_multiaddrs)
        loop = asyncio.get_running_loop()
        try:
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                try:
                    if not await self.handle(json.loads(line)):
                        break
                except Exception as exc:
                    _emit(event="error", detail=f"{type(exc).__name__}: {exc}")
        finally:
            task.cancel()
            await self.swarm.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--dial", action="append", default=[])
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(SimPeer(args.home, args.run_id, args.interval).run(args.dial))


if __name__ == "__main__":
    main()

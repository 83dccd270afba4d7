"""Control-plane benchmark: an idle supervisor's memory, and gossip latency among 5 nodes on loopback.

    python benchmarks/control_plane.py [--nodes 5] [--messages 40] [--rate 1] [--idle-s 10] [--json] [--skip-rss]

1. Idle RSS: a real `zoo-node join --worker-mode none` on an anvil dev chain (registered, in a run, heartbeating),
   measured after `--idle-s` seconds of idling. Peer in the same run: a bare py-libp2p host with gossipsub, idle.
   Goal: under 200 MB.
2. Gossip latency: `--nodes` processes, each a real guarded swarm (`zoo_node.control.swarm_thread`: strict
   signing, the guard, envelopes), each publishing `--messages` heartbeats at `--rate` per second; latency is the
   receive time minus the send time (same machine, same clock) of every heartbeat every node accepts. Peer in the
   same run: the same topology and traffic on plain py-libp2p gossipsub (no guard, no envelope checks).
   The send time travels in the heartbeat's `throughput` field (µs precision; a benchmark-only payload).

Prints p50/p95 and the ratios against the peers. Numbers depend on the machine's load: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUN_ID = 1
BARE_HOST = """
import sys, trio, multiaddr
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.pubsub.gossipsub import GossipSub, PROTOCOL_ID_V11
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

async def main():
    host = new_host(key_pair=create_new_key_pair(), muxer_preference="YAMUX")
    router = GossipSub(protocols=[PROTOCOL_ID_V11], degree=6, degree_low=5, degree_high=12, heartbeat_interval=1)
    pubsub = Pubsub(host, router)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            await pubsub.subscribe("/zoo/run/1/heartbeat/1")
            print("ready", flush=True)
            await trio.sleep_forever()

trio.run(main)
"""


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_NODE_", "NOTIFY_SOCKET"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def measure_idle_rss(idle_s: float) -> dict[str, float]:
    from zoo_node.chain.devchain import start_devchain
    from zoo_node.config import NETWORK_PRESETS, write_config
    from zoo_node.control.status_client import NodeClient, NodeUnreachable
    from zoo_node.identity import create_keys, operator_address

    workdir = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    chain = start_devchain(accounts=3, deployment_file=workdir / "deployment.json")
    join = bare = None
    try:
        owner = chain.client(chain.accounts[1])
        owner.runs.create_run(
            spec_hash=b"\x01" * 32,
            coordinator=chain.accounts[1].address,
            epoch_length_s=3600,
            reward_per_epoch=10**18,
            funding=10**19,
        )
        home = workdir / "node"
        create_keys(home, "benchmark", scrypt_n=1 << 12)
        layer = dict(NETWORK_PRESETS["devnet"])
        layer["chain"] = {"rpc_url": chain.rpc_url, "deployment_file": str(workdir / "deployment.json")}
        write_config(home / "config.toml", layer)
        chain.fund(operator_address(home), 10 * 10**18)
        (home / "password").write_text("benchmark")
        command = [sys.executable, "-m", "zoo_node", "join", "--home", str(home), "--register", "--stake", "1"]
        command += ["--password-file", str(home / "password"), "--worker-mode", "none"]
        join = subprocess.Popen(
            command,
            cwd=REPO,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with NodeClient.for_home(home) as client:
                    if client.status().node.state == 2:  # NODE_STATE_RUNNING
                        break
            except NodeUnreachable:
                pass
            if join.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the supervisor did not come up")
            time.sleep(0.5)
        time.sleep(idle_s)
        supervisor_rss, supervisor_peak = rss_mb(join.pid)
        bare = subprocess.Popen([sys.executable, "-c", BARE_HOST], env=_env(), stdout=subprocess.PIPE, text=True)
        assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
        time.sleep(idle_s)
        bare_rss, _ = rss_mb(bare.pid)
        return {
            "supervisor_rss_mb": supervisor_rss,
            "supervisor_peak_rss_mb": supervisor_peak,
            "bare_libp2p_host_rss_mb": bare_rss,
        }
    finally:
        for proc in (join, bare):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        chain.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---- one gossip node (a child process of this benchmark) ------------------------------------------------------


async def _guarded_node(args: argparse.Namespace, seeds: list[bytes]) -> list[float]:
    from zoo_node.control.gossip_params import GossipParams, rate_limit_per_topic
    from zoo_node.control.guard import GossipGuard
    from zoo_node.control.messages import ControlKey, MonotonicMillis, encode_envelope
    from zoo_node.control.swarm import SwarmSettings
    from zoo_node.control.swarm_thread import SwarmThread
    from zoo_node.control.topics import RunTopics
    from zoo_node.proto import gossip_pb2

    keys = [ControlKey.from_seed(seed) for seed in seeds]
    me = keys[args.index]
    topics = RunTopics(RUN_ID)
    latencies: list[float] = []

    def on_accept(accepted) -> None:
        latencies.append(time.time() * 1000 - accepted.envelope.heartbeat.throughput / 1000)

    guard = GossipGuard(topics, max_message_bytes=64 * 1024, max_age_s=120)
    guard.set_registered(k.peer_id for k in keys)
    limit = rate_limit_per_topic(args.nodes, 1 / args.rate)
    swarm = SwarmThread(
        SwarmSettings(
            seeds[args.index], ["/ip4/127.0.0.1/tcp/0"], topics.all(), GossipParams(rate_limit_per_topic=limit)
        ),
        guard,
        on_accept,
    )
    await swarm.start()
    clock = MonotonicMillis()

    async def publish() -> None:
        heartbeat = gossip_pb2.Heartbeat(operator="0x" + "00" * 20, throughput=time.time() * 1e6)
        await swarm.publish(topics.heartbeat, encode_envelope(me.peer_id, RUN_ID, clock(), heartbeat=heartbeat))

    await _run_node(args, swarm.listen_multiaddrs[0], swarm.dial, publish, asyncio.sleep)
    await swarm.stop()
    if sum(guard.counters.snapshot().values()):
        print(f"node {args.index} dropped {guard.counters.snapshot()}", file=sys.stderr)
    return latencies


async def _run_node(args, my_addr: str, dial, publish, sleep) -> None:
    """Rendezvous through files in the workdir, dial the lower-numbered nodes, publish, wait for stragglers."""
    workdir = Path(args.workdir)
    (workdir / f"addr-{args.index}.tmp").write_text(my_addr)
    os.replace(workdir / f"addr-{args.index}.tmp", workdir / f"addr-{args.index}")
    while len(list(workdir.glob("addr-[0-9]*"))) < args.nodes:
        await sleep(0.05)
    for other in range(args.index):
        await dial((workdir / f"addr-{other}").read_text())
    (workdir / f"dialled-{args.index}").touch()
    while len(list(workdir.glob("dialled-*"))) < args.nodes:
        await sleep(0.05)
    await sleep(3.0)  # let the mesh form (router heartbeat: 1 s)
    cpu, wall = time.process_time(), time.monotonic()
    for _ in range(args.messages):
        await publish()
        await sleep(1 / args.rate)
    await sleep(3.0)  # stragglers
    args.cpu_share = (time.process_time() - cpu) / (time.monotonic() - wall)


def _raw_node(args: argparse.Namespace, seeds: list[bytes]) -> list[float]:
    """The same node on plain py-libp2p gossipsub (trio): the peer measured in the same run."""
    import multiaddr
    import trio
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service

    from zoo_node.control.gossip_params import rate_limit_per_topic
    from zoo_node.control.messages import ControlKey, MonotonicMillis, encode_envelope
    from zoo_node.proto import gossip_pb2

    me = ControlKey.from_seed(seeds[args.index])
    topic = f"/zoo/run/{RUN_ID}/heartbeat/1"
    latencies: list[float] = []
    clock = MonotonicMillis()

    async def main() -> None:
        host = new_host(key_pair=create_new_key_pair(seeds[args.index]), muxer_preference="YAMUX")
        router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=6,
            degree_low=5,
            degree_high=12,
            heartbeat_interval=1,
            max_messages_per_topic_per_second=rate_limit_per_topic(args.nodes, 1 / args.rate),
        )
        pubsub = Pubsub(host, router)
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with host.run(listen), background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            subscription = await pubsub.subscribe(topic)

            async def receive() -> None:
                while True:
                    msg = await subscription.get()
                    if msg.from_id != host.get_id().to_bytes():
                        heartbeat = gossip_pb2.GossipEnvelope.FromString(msg.data).heartbeat
                        latencies.append(time.time() * 1000 - heartbeat.throughput / 1000)

            async def dial(addr: str) -> None:
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))

            async def publish() -> None:
                heartbeat = gossip_pb2.Heartbeat(operator="0x" + "00" * 20, throughput=time.time() * 1e6)
                await pubsub.publish(topic, encode_envelope(me.peer_id, RUN_ID, clock(), heartbeat=heartbeat))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                my_addr = f"{host.get_addrs()[0]}"
                if "/p2p/" not in my_addr:
                    my_addr += f"/p2p/{host.get_id().to_base58()}"
                await _run_node(args, my_addr, dial, publish, trio.sleep)
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except Exception as exc:  # py-libp2p can trip over a message arriving while it shuts down
        print(f"node {args.index}: error while stopping: {exc!r}", file=sys.stderr)
    return latencies


def gossip_node_main(args: argparse.Namespace) -> None:
    seeds = [bytes([i + 1]) * 32 for i in range(args.nodes)]
    latencies = _raw_node(args, seeds) if args.raw else asyncio.run(_guarded_node(args, seeds))
    result = {"latencies_ms": latencies, "cpu_share": getattr(args, "cpu_share", float("nan"))}
    Path(args.workdir, f"latencies-{args.index}.json").write_text(json.dumps(result))


def measure_gossip(nodes: int, messages: int, rate: float, raw: bool) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="zoo-gossip-"))
    try:
        common = [sys.executable, __file__, "--gossip-node", "--nodes", str(nodes), "--messages", str(messages)]
        common += ["--rate", str(rate), "--workdir", str(workdir)] + (["--raw"] if raw else [])
        procs = [subprocess.Popen([*common, "--index", str(i)], env=_env()) for i in range(nodes)]
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                raise SystemExit(f"a gossip node failed ({proc.returncode})")
        latencies, cpu = [], []
        for i in range(nodes):
            result = json.loads((workdir / f"latencies-{i}.json").read_text())
            latencies += result["latencies_ms"]
            cpu.append(result["cpu_share"])
        expected = nodes * (nodes - 1) * messages
        qs = statistics.quantiles(latencies, n=100)
        return {
            "p50_ms": qs[49],
            "p95_ms": qs[94],
            "delivered": len(latencies) / expected,
            "cpu_per_node": statistics.mean(cpu),  # share of one core, while publishing
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--messages", type=int, default=40, help="heartbeats each node publishes")
    parser.add_argument("--rate", type=float, default=1.0, help="heartbeats per second per node (devnet: 0.5)")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--gossip-node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gossip_node:
        gossip_node_main(args)
        return
    results: dict[str, object] = {}
    if not args.skip_rss:
        rss = measure_idle_rss(args.idle_s)
        rss["ratio_to_bare_host"] = rss["supervisor_rss_mb"] / rss["bare_libp2p_host_rss_mb"]
        rss["goal_mb"] = 200
        results["idle_rss"] = rss
    guarded = measure_gossip(args.nodes, args.messages, args.rate, raw=False)
    raw = measure_gossip(args.nodes, args.messages, args.rate, raw=True)
    results["gossip"] = {
        "nodes": args.nodes,
        "messages_per_node": args.messages,
        "rate_per_node_per_s": args.rate,
        "zoo_node": guarded,
        "plain_py_libp2p": raw,
        "p50_ratio": guarded["p50_ms"] / raw["p50_ms"],
        "p95_ratio": guarded["p95_ms"] / raw["p95_ms"],
        "cpu_ratio": guarded["cpu_per_node"] / raw["cpu_per_node"],
        "load_average_1min": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(results))
        return
    if "idle_rss" in results:
        r = results["idle_rss"]
        print(
            f"idle supervisor RSS: {r['supervisor_rss_mb']:.0f} MB "
            f"(peak {r['supervisor_peak_rss_mb']:.0f} MB; goal < 200); "
            f"bare py-libp2p host {r['bare_libp2p_host_rss_mb']:.0f} MB; ratio {r['ratio_to_bare_host']:.2f}"
        )
    g = results["gossip"]
    print(
        f"gossip latency, {args.nodes} nodes on loopback, {args.rate:g} heartbeats/s each:\n"
        f"  zoo-node (guarded): p50 {guarded['p50_ms']:.1f} ms, p95 {guarded['p95_ms']:.1f} ms, "
        f"delivered {guarded['delivered']:.1%}, CPU {guarded['cpu_per_node']:.0%} of a core per node\n"
        f"  plain py-libp2p:    p50 {raw['p50_ms']:.1f} ms, p95 {raw['p95_ms']:.1f} ms, "
        f"delivered {raw['delivered']:.1%}, CPU {raw['cpu_per_node']:.0%} of a core per node\n"
        f"  ratio zoo-node / plain: p50 {g['p50_ratio']:.2f}, p95 {g['p95_ratio']:.2f}, CPU {g['cpu_ratio']:.2f}\n"
        f"  (1-minute load average at the end: {g['load_average_1min']:.1f} on {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()

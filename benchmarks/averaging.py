"""Averaging benchmark: hivemind all-reduce (3 peers, 100 MB of fp32 each, loopback) against torch.distributed gloo
all_reduce measured in the same run, and the bytes one averaging round puts on the wire for each compression.

Run: `python benchmarks/averaging.py [--mb 100] [--rounds 3]`. Prints one JSON object; the figures that matter are
ratios against gloo (this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEERS = 3


def _gloo_worker(rank: int, store_path: str, numel: int, rounds: int, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=PEERS)
    tensor = torch.randn(numel)
    dist.all_reduce(tensor)  # warm-up
    times = []
    for _ in range(rounds):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - start)
    out[rank] = times
    dist.destroy_process_group()


def gloo_seconds(numel: int, rounds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_gloo_worker, args=(str(Path(tmp) / "store"), numel, rounds, out), nprocs=PEERS, join=True)
        return statistics.median(max(out[r][i] for r in range(PEERS)) for i in range(rounds))


def hivemind_seconds(numel: int, rounds: int, compression: str) -> float:
    import hivemind

    from zoo_node.worker.averaging import make_averager

    first = hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"])
    dhts = [first] + [
        hivemind.DHT(
            start=True, initial_peers=[str(m) for m in first.get_visible_maddrs()], host_maddrs=["/ip4/127.0.0.1/tcp/0"]
        )
        for _ in range(PEERS - 1)
    ]
    averagers = []
    try:
        for dht in dhts:
            p = torch.nn.Parameter(torch.zeros(numel))
            p.grad = torch.randn(numel)
            averager = make_averager(
                [p],
                dht=dht,
                prefix=f"bench_{compression}",
                compression=compression,
                powersgd_rank=4,
                matchmaking_time_s=3.0,
                averaging_timeout_s=300.0,
                client_mode=False,
                state_provider=lambda: ({}, []),
            )
            averagers.append(averager)

        def one(averager):  # the all-reduce alone: matchmaking is done when control.stage says so
            # One accumulated micro-batch of weight 1 (a step resets the counters; all-zero weights average to NaN).
            averager.local_samples_accumulated, averager.local_times_accumulated = 1, 1
            control = averager.step(wait=False, timeout=120, gather={})
            while control.stage.name in ("IDLE", "LOOKING_FOR_GROUP"):
                time.sleep(0.01)
            start = time.perf_counter()
            control.result(600)
            return time.perf_counter() - start

        times = []
        with ThreadPoolExecutor(PEERS) as pool:
            for _ in range(rounds):
                times.append(max(pool.map(one, averagers)))
        return statistics.median(times)
    finally:
        for averager in averagers:
            averager.shutdown()
        for dht in dhts:
            dht.shutdown()


def wire_bytes_per_round(numel: int) -> dict[str, int]:
    """Bytes each peer sends in one butterfly all-reduce round ((n-1)/n of its vector out, the averaged parts back),
    by compression: the serialized size of the parts, measured with hivemind's compressors."""
    from hivemind.compression import CompressionInfo

    from zoo_node.worker.averaging import COMPRESSIONS

    sample = torch.randn(min(numel, 1 << 22))
    scale = numel / sample.numel()
    out = {}
    for name, make in COMPRESSIONS.items():
        if name == "powersgd":
            continue
        size = make().compress(sample, CompressionInfo.from_tensor(sample)).ByteSize()
        out[name] = int(2 * size * scale * (PEERS - 1) / PEERS)
    # PowerSGD: the vector as a square-ish matrix, rank-4 factors P (m x r) and Q (n x r) in fp16, averaged in two
    # phases (P, then Q), each sent and received like a butterfly round.
    m = int(numel**0.5)
    n = numel // m
    out["powersgd"] = int(2 * 2 * 4 * (m + n) * (PEERS - 1) / PEERS)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="Megabytes of fp32 per peer.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    numel = int(args.mb * 1e6 / 4)
    torch.set_num_threads(1)
    gloo = gloo_seconds(numel, args.rounds)
    plain = hivemind_seconds(numel, args.rounds, "none")
    fp16 = hivemind_seconds(numel, args.rounds, "fp16")
    uniform8bit = hivemind_seconds(numel, args.rounds, "uniform8bit")
    result = {
        "peers": PEERS,
        "megabytes_per_peer": args.mb,
        "gloo_all_reduce_s": round(gloo, 3),
        "hivemind_none_s": round(plain, 3),
        "hivemind_fp16_s": round(fp16, 3),
        "hivemind_uniform8bit_s": round(uniform8bit, 3),
        "ratio_hivemind_none_over_gloo": round(plain / gloo, 2),
        "ratio_hivemind_fp16_over_gloo": round(fp16 / gloo, 2),
        "ratio_hivemind_uniform8bit_over_gloo": round(uniform8bit / gloo, 2),
        "wire_bytes_per_peer_per_round": wire_bytes_per_round(numel),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

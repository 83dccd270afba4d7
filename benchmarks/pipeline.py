"""Pipeline benchmark: what the data plane's RPCs add to a micro-batch, against the compute of the same micro-batch
in one process, measured in the same run.

Two `zoo-node worker` processes serve zen-3-tiny-moe in 2 stages x 2 expert groups (each stage's expert groups on
the other worker, so every expert call crosses processes); this process drives micro-batches through them and
times forward + backward, then times the same micro-batches through `LocalComposition` (the same shards, called
directly). Run: `python benchmarks/pipeline.py [--micro-batches 20] [--seq-len 64] [--batch 4]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo_node.config import NETWORK_PRESETS, load_config, write_config
from zoo_node.identity import create_keys, ensure_home
from zoo_node.runspec import dump_runspec, parse_runspec


def _home(root: Path, name: str) -> Path:
    home = ensure_home(root / name)
    create_keys(home, "benchmark", scrypt_n=1 << 12)
    write_config(home / "config.toml", NETWORK_PRESETS["devnet"])
    return home


def _start(root: Path, name: str, spec_path: Path, shards: str, peers: list[str]) -> tuple[subprocess.Popen, dict]:
    cmd = [sys.executable, "-m", "zoo_node.cli", "worker", "--json", "--no-drive", "--run-spec", str(spec_path)]
    cmd += ["--home", str(_home(root, name)), "--shards", shards] + [a for p in peers for a in ("--peer", p)]
    out = root / f"{name}.out"
    proc = subprocess.Popen(cmd, stdout=out.open("w"), stderr=(root / f"{name}.log").open("w"), start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if '"started"' in line:
                return proc, json.loads(line)
        if proc.poll() is not None:
            raise SystemExit(f"worker {name} exited: {(root / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.2)
    raise SystemExit(f"worker {name} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro-batches", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the workers do on this machine (a quarter of the cores)
    from zoo_node.model import LocalComposition
    from zoo_node.worker.node import WorkerNode, WorkerOptions
    from zoo_node.worker.shards import model_parts

    spec = parse_runspec(
        {
            "name": "bench",
            "model": "zen-3-tiny-moe",
            "averaging": {"target_batch_size": 1_000_000},  # no averaging during the benchmark
            "data": {"seq_len": args.seq_len, "micro_batch_size": args.batch},
        }
    )
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec_path = root / "spec.toml"
        spec_path.write_text(dump_runspec(spec))
        try:
            a, started = _start(root, "a", spec_path, "stage/0,experts/1/0,experts/1/1", [])
            procs.append(a)
            b, _ = _start(root, "b", spec_path, "stage/1,experts/0/0,experts/0/1", [started["maddrs"][0]])
            procs.append(b)
            home = _home(root, "client")
            opts = WorkerOptions(initial_peers=[started["maddrs"][0]], shards=[], drive=False)
            client = WorkerNode(home, load_config(home), spec, opts)
            client.start()
            torch.manual_seed(0)
            tokens = torch.randint(0, 256, (args.batch, args.seq_len + 1))
            x, y = tokens[:, :-1], tokens[:, 1:]
            pipeline = client.pipeline()
            times = []
            for i in range(args.micro_batches + 2):
                start = time.perf_counter()
                loss, aux = pipeline.loss(x, y, {"micro": f"bench/{i}", "samples": args.batch})
                (loss + aux).backward()
                if i >= 2:  # the first two warm up connections and caches
                    times.append(time.perf_counter() - start)
            client.drain()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
    config, partition = model_parts(spec)
    local = LocalComposition(config, partition, seed=0)
    local_times = []
    for i in range(args.micro_batches + 2):
        start = time.perf_counter()
        loss, aux = local(x, y)
        (loss + aux).backward()
        if i >= 2:
            local_times.append(time.perf_counter() - start)
    moe_layers = len(config.moe_layers)
    groups = spec.partition.expert_groups
    rpcs = 2 * ((partition.n_stages - 1) + moe_layers * groups)  # forward + backward of every remote call
    dist_ms, local_ms = statistics.median(times) * 1e3, statistics.median(local_times) * 1e3
    print(
        json.dumps(
            {
                "micro_batch": f"{args.batch} x {args.seq_len} tokens, zen-3-tiny-moe, 2 stages x {groups} groups",
                "local_compute_ms": round(local_ms, 2),
                "distributed_ms": round(dist_ms, 2),
                "overhead_ms": round(dist_ms - local_ms, 2),
                "ratio_distributed_over_local": round(dist_ms / local_ms, 2),
                "remote_rpcs_per_micro_batch": rpcs,
                "overhead_ms_per_rpc": round((dist_ms - local_ms) / rpcs, 2),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

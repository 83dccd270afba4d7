#!/usr/bin/env python3
"""Metering on this machine's device: identity, peak (table or calibration), MFU of timed GEMM steps, and the
device-seconds with their evidence (NVML on a GPU, process CPU time on a CPU).

The peer measured in the same run is the calibration GEMM: steps that are the same GEMM should reach an MFU near
the calibrated peak (ratio ~1.0 on a calibrated device); on a GPU in the table the script also prints the calibrated
bf16 peak against the table's (what fraction of the datasheet peak a plain matmul reaches).

Usage: python benchmarks/metering_check.py [--device auto|cpu|cuda:0] [--steps 20]
On a GPU it exits 1 unless NVML saw our PID on the device and the energy counter moved.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    import torch

    from zoo_node.worker.metering import NvmlProbe, WorkMeter, calibrate_peak_flops, detect_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    device = detect_device(args.device)
    gpu = device.kind == "gpu"
    size = 8192 if gpu else 512
    dtype = torch.bfloat16 if gpu else torch.float32
    # A "model" whose step is one square GEMM: 2 n^3 FLOPs per step, counted as n^2 "tokens" of 2 n FLOPs each.
    meter = WorkMeter(device, 2.0 * size, nvml=NvmlProbe.open(device.uuids) if gpu else None)
    a = torch.randn(size, size, device=device.torch_device, dtype=dtype)
    b = torch.randn(size, size, device=device.torch_device, dtype=dtype)
    out = torch.empty_like(a)
    with torch.inference_mode():
        torch.matmul(a, b, out=out)
        for i in range(args.steps):
            with meter.step(tokens=size * size):
                for _ in range(4 if gpu else 1):
                    torch.matmul(a, b, out=out)
            if i % 5 == 0:
                meter.sample_evidence()
    # Four GEMMs per GPU step: count their FLOPs (the meter counted one).
    epoch = meter.close_epoch()
    gemms = 4 if gpu else 1
    mfu = epoch.mfu * gemms
    print(json.dumps({"device": device.as_dict(), "epoch": epoch.as_dict()}, indent=1, default=str))
    source = device.as_dict()["peak_source"]
    print(f"device: {device.label}; peak {device.peak_flops / 1e12:.2f} TFLOP/s from the {source}")
    print(f"MFU of GEMM steps: {100 * mfu:.1f}%; {epoch.device_seconds:.2f} {epoch.device_seconds_label}")
    if device.measured:
        print(f"ratio step MFU / calibration: {mfu:.2f} (1.0 = the steps run at the calibrated rate)")
    else:
        measured = calibrate_peak_flops(device.torch_device)
        print(f"ratio calibrated bf16 GEMM / table peak: {measured / device.peak_flops:.2f}")
    if gpu:
        gpus = epoch.evidence.get("gpus", [])
        ok = bool(gpus) and all(g["pid_seen"] > 0 and (g["energy_j"] or 0) > 0 for g in gpus)
        print(f"NVML evidence: {'ok' if ok else 'MISSING'} ({epoch.evidence.get('source')})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

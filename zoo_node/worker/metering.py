"""Metering of the worker's work: model FLOPs per step, wall time, MFU, and device-seconds with NVML evidence.

- FLOPs of a step: tokens x `zoo_node.model.flops_per_token(config, seq_len, shard)` (PaLM appendix B).
- MFU = achieved model FLOP/s / peak FLOP/s of the devices in use. The peak comes from `PEAK_TFLOPS` (dense bf16,
  by GPU model, DESIGN.md); a device not in the table is measured by a timed calibration GEMM and marked
  `measured=True` (a CPU always is).
- Per epoch: MFU over the seconds spent stepping, and device-seconds over the seconds the shard was held. On a GPU
  they are GPU-seconds backed by NVML evidence (our PID among the device's compute processes, the energy counter's
  delta, GPU model and UUID); without a GPU they are the process's CPU-seconds (user + system time of all threads),
  labelled `cpu-seconds`. NVML missing is normal on a CPU machine, not an error.

Needs torch (the calibration GEMM, CUDA device names); pynvml is imported only where a GPU is in use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from zoo_node.peaks import PEAK_TFLOPS, format_device_label, normalise_gpu_name, table_peak_flops

logger = logging.getLogger(__name__)

__all__ = ["PEAK_TFLOPS", "DeviceInfo", "WorkMeter", "detect_device", "normalise_gpu_name", "table_peak_flops"]

DeviceKind = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class DeviceInfo:
    """The devices a worker computes on and their peak FLOP/s (per device)."""

    kind: DeviceKind
    name: str  # as the driver (or /proc/cpuinfo) reports it
    count: int
    peak_flops: float  # per device
    measured: bool  # True: a calibration GEMM measured the peak; False: the peak table gave it
    model: str | None = None  # the peak table's model, when the table was used
    uuids: tuple[str, ...] = ()
    torch_device: str = "cpu"

    @property
    def total_peak_flops(self) -> float:
        return self.peak_flops * self.count

    @property
    def label(self) -> str:
        """What a receipt's `device` says: "NVIDIA H100 80GB HBM3 x8", or with a calibrated peak
        "cpu x1 (measured 0.152 TFLOP/s)" (see `zoo_node.peaks.parse_device_label`)."""
        return format_device_label(
            self.name if self.kind == "gpu" else "cpu", self.count, self.peak_flops if self.measured else None
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["uuids"] = list(self.uuids)
        data["peak_tflops"] = self.peak_flops / 1e12
        data["peak_source"] = "calibration" if self.measured else "table"
        return data


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def calibrate_peak_flops(
    device: str = "cpu", *, dtype: Any = None, size: int | None = None, min_seconds: float = 0.25
) -> float:
    """Measure a device's dense matmul throughput (FLOP/s) with a timed square GEMM.

    bf16 on a GPU (the table's precision), fp32 on a CPU (what a CPU worker trains in). Runs whole batches of
    GEMMs until `min_seconds` have passed after one warm-up GEMM, so the figure is a rate, not one call's latency.
    """
    import torch

    gpu = device.startswith("cuda")
    dtype = dtype or (torch.bfloat16 if gpu else torch.float32)
    size = size or (8192 if gpu else 512)
    with torch.inference_mode():
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        torch.matmul(a, b, out=out)  # warm-up: kernel selection, allocation
        _synchronize(device)
        calls, batch = 0, 1
        start = time.perf_counter()
        while True:
            for _ in range(batch):
                torch.matmul(a, b, out=out)
            _synchronize(device)
            calls += batch
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
            batch *= 2
    return 2.0 * size**3 * calls / elapsed


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):  # noqa: SIM115 - short read of a virtual file
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return f"cuda:{torch.cuda.current_device()}"
    return device


def gpu_device_info(
    name: str,
    *,
    count: int = 1,
    uuids: tuple[str, ...] = (),
    torch_device: str = "cuda:0",
    calibrate: Callable[[str], float] = calibrate_peak_flops,
) -> DeviceInfo:
    """A GPU's peak from the table when its name is known there; otherwise measured by `calibrate(torch_device)`."""
    peak = table_peak_flops(name)
    if peak is None:
        logger.info("GPU %r is not in the peak table: measuring it with a calibration GEMM", name)
        return DeviceInfo("gpu", name, count, calibrate(torch_device), True, None, uuids, torch_device)
    return DeviceInfo("gpu", name, count, peak, False, normalise_gpu_name(name), uuids, torch_device)


def detect_device(
    device: str = "auto",
    *,
    count: int = 1,
    calibrate: Callable[[str], float] = calibrate_peak_flops,
) -> DeviceInfo:
    """Identify the worker's device: GPU name and UUID and its table peak, or a calibrated peak when the GPU is not
    in the table or the worker runs on the CPU."""
    device = _resolve_device(device)
    if device.startswith("cuda"):
        import torch

        index = int(device.split(":", 1)[1]) if ":" in device else 0
        props = torch.cuda.get_device_properties(index)
        uuid = str(getattr(props, "uuid", "") or "")
        uuids = ((uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"),) if uuid else ()
        return gpu_device_info(props.name, count=count, uuids=uuids, torch_device=device, calibrate=calibrate)
    return DeviceInfo("cpu", cpu_name(), 1, calibrate(device), True, None, (), device)


# ---- NVML evidence ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuSample:
    """One NVML reading of one GPU."""

    uuid: str
    name: str
    energy_mj: int | None  # total energy since the driver loaded (Volta and newer), millijoules
    pid_on_device: bool  # our PID is among the device's compute processes


@dataclass(frozen=True)
class NvmlSample:
    at: float  # time.monotonic()
    gpus: tuple[GpuSample, ...]


class NvmlProbe:
    """Reads the worker's GPUs through NVML (nvidia-ml-py). `open()` returns None where NVML is absent."""

    def __init__(self, pynvml: Any, handles: list[Any], pid: int) -> None:
        self._nvml = pynvml
        self._handles = handles
        self.pid = pid

    @classmethod
    def open(cls, uuids: tuple[str, ...] = (), *, pid: int | None = None) -> NvmlProbe | None:
        """Probe the GPUs with these UUIDs (all GPUs when empty); None when NVML or a GPU is missing (normal on CPU).

        Note: inside a container without the host PID namespace NVML lists host PIDs, so `pid_on_device` may be
        False although we compute there; the report shows the evidence as found.
        """
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            logger.debug("NVML is not available (%s): reporting CPU-seconds", exc)
            return None
        try:
            if uuids:
                handles = [pynvml.nvmlDeviceGetHandleByUUID(u) for u in uuids]
            else:
                handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            logger.warning("NVML cannot open the worker's GPUs %s: %s", list(uuids), exc)
            pynvml.nvmlShutdown()
            return None
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles, os.getpid() if pid is None else pid)

    def _read(self, handle: Any) -> GpuSample:
        nvml = self._nvml
        name = nvml.nvmlDeviceGetName(handle)
        uuid = nvml.nvmlDeviceGetUUID(handle)
        try:
            energy = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError:
            energy = None  # pre-Volta GPUs have no energy counter
        try:
            pids = {p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        except nvml.NVMLError:
            pids = set()
        return GpuSample(str(uuid), str(name), energy, self.pid in pids)

    def sample(self) -> NvmlSample:
        return NvmlSample(time.monotonic(), tuple(self._read(h) for h in self._handles))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def nvml_evidence(first: NvmlSample, last: NvmlSample, samples_with_pid: Mapping[str, int], samples: int) -> dict:
    """The evidence of one interval: per GPU its UUID and model, energy used (J) and how often our PID was seen."""
    gpus = []
    for a, b in zip(first.gpus, last.gpus, strict=True):
        energy = None if a.energy_mj is None or b.energy_mj is None else (b.energy_mj - a.energy_mj) / 1000.0
        gpus.append(
            {
                "uuid": b.uuid,
                "name": b.name,
                "energy_j": energy,
                "pid_seen": samples_with_pid.get(b.uuid, 0),
                "samples": samples,
            }
        )
    return {"source": "nvml", "seconds": last.at - first.at, "gpus": gpus}


# ---- the meter ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepMetrics:
    tokens: int
    flops: float
    seconds: float
    mfu: float


@dataclass(frozen=True)
class EpochMetrics:
    """One metering interval (an epoch of the worker)."""

    steps: int
    tokens: int
    flops: float  # model FLOPs of the steps
    step_seconds: float  # wall seconds inside steps
    wall_seconds: float  # wall seconds the shard was held (steps, averaging, waiting)
    mfu: float  # flops / (step_seconds * total peak)
    device_seconds: float  # GPU-seconds (wall x GPUs) or CPU-seconds (process CPU time)
    device_seconds_label: Literal["gpu-seconds", "cpu-seconds"]
    device: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def device_hours(self) -> float:
        return self.device_seconds / 3600.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "device_hours": self.device_hours}


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over peak FLOP/s (0 for an empty interval)."""
    if seconds <= 0 or peak_flops <= 0:
        return 0.0
    return flops / seconds / peak_flops


class WorkMeter:
    """Counts a worker's steps: FLOPs from the model, wall time, MFU, device-seconds and NVML evidence.

    `flops_per_token` is `zoo_node.model.flops_per_token(config, seq_len, shard)` for the shard the worker holds.
    Thread-safe enough for one stepping thread plus readers (it only adds numbers under the GIL).
    """

    def __init__(
        self,
        device: DeviceInfo,
        flops_per_token: float,
        *,
        nvml: NvmlProbe | None = None,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        if flops_per_token <= 0:
            raise ValueError(f"flops_per_token: {flops_per_token} must be positive")
        self.device = device
        self.flops_per_token = float(flops_per_token)
        self.nvml = nvml
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._start_epoch()

    def _start_epoch(self, now: float | None = None, cpu_now: float | None = None) -> None:
        # The next interval starts at the instant the previous one closed: no time falls between two epochs.
        self._steps = 0
        self._tokens = 0
        self._flops = 0.0
        self._step_seconds = 0.0
        self._wall_start = self._clock() if now is None else now
        self._cpu_start = self._cpu_clock() if cpu_now is None else cpu_now
        self._nvml_first = self.nvml.sample() if self.nvml is not None else None
        self._nvml_samples = 1 if self._nvml_first is not None else 0
        self._pid_seen: dict[str, int] = {}
        if self._nvml_first is not None:
            self._count_pid(self._nvml_first)

    def _count_pid(self, sample: NvmlSample) -> None:
        for gpu in sample.gpus:
            if gpu.pid_on_device:
                self._pid_seen[gpu.uuid] = self._pid_seen.get(gpu.uuid, 0) + 1

    def record_step(self, tokens: int, seconds: float) -> StepMetrics:
        """Account one step of `tokens` tokens that took `seconds` of wall time."""
        if tokens < 0 or seconds < 0:
            raise ValueError(f"a step of {tokens} tokens in {seconds} s")
        flops = tokens * self.flops_per_token
        self._steps += 1
        self._tokens += tokens
        self._flops += flops
        self._step_seconds += seconds
        return StepMetrics(tokens, flops, seconds, mfu(flops, seconds, self.device.total_peak_flops))

    @contextlib.contextmanager
    def step(self, tokens: int) -> Iterator[list[StepMetrics]]:
        """Time a step (waiting for the GPU to finish); the yielded list receives its `StepMetrics`."""
        result: list[StepMetrics] = []
        if self.device.kind == "gpu":  # work queued before the step is not the step's
            _synchronize(self.device.torch_device)
        start = self._clock()
        yield result
        if self.device.kind == "gpu":
            _synchronize(self.device.torch_device)
        result.append(self.record_step(tokens, self._clock() - start))

    def sample_evidence(self) -> None:
        """Take an NVML reading now (call it now and then while stepping: at each averaging round)."""
        if self.nvml is not None:
            self._count_pid(self.nvml.sample())
            self._nvml_samples += 1

    @property
    def flops(self) -> float:
        return self._flops

    def close_epoch(self) -> EpochMetrics:
        """The figures since the last call (or the start), and start a new interval."""
        now, cpu_now = self._clock(), self._cpu_clock()
        wall = now - self._wall_start
        evidence: dict[str, Any]
        if self.device.kind == "gpu":
            label: Literal["gpu-seconds", "cpu-seconds"] = "gpu-seconds"
            device_seconds = wall * self.device.count
            if self.nvml is not None and self._nvml_first is not None:
                last = self.nvml.sample()
                self._count_pid(last)
                self._nvml_samples += 1
                evidence = nvml_evidence(self._nvml_first, last, self._pid_seen, self._nvml_samples)
            else:
                evidence = {"source": "none", "why": "NVML is not available on this machine"}
        else:
            label = "cpu-seconds"
            device_seconds = cpu_now - self._cpu_start
            evidence = {"source": "process_time", "cpu_seconds": device_seconds, "wall_seconds": wall}
        metrics = EpochMetrics(
            steps=self._steps,
            tokens=self._tokens,
            flops=self._flops,
            step_seconds=self._step_seconds,
            wall_seconds=wall,
            mfu=mfu(self._flops, self._step_seconds, self.device.total_peak_flops),
            device_seconds=device_seconds,
            device_seconds_label=label,
            device=self.device.as_dict(),
            evidence=evidence,
        )
        self._start_epoch(now, cpu_now)
        return metrics


# ---- FLOPs of a run's shards --------------------------------------------------------------------------------
def shard_flops_per_token(spec: Any, shard: str) -> int:
    """`flops_per_token` of one shard of a run (its preset, partition and sequence length)."""
    from zoo_node.model import flops_per_token
    from zoo_node.worker.shards import model_parts

    config, partition = model_parts(spec)
    return flops_per_token(config, spec.data.seq_len, shard=partition.shard(config, shard))


def flops_per_sample_table(spec: Any) -> dict[str, int]:
    """Model FLOPs of one sample (a sequence of `seq_len` tokens) for every shard of the run: what settlement
    credits per witnessed sample. The coordinator gets it from `python -m zoo_node.worker.metering flops-table`."""
    from zoo_node.model import flops_per_token
    from zoo_node.worker.shards import model_parts

    config, partition = model_parts(spec)
    seq_len = spec.data.seq_len
    return {s.name: seq_len * flops_per_token(config, seq_len, shard=s) for s in partition.shards(config)}


def _main(argv: list[str]) -> int:
    """`python -m zoo_node.worker.metering flops-table RUNSPEC.toml`: the table as JSON on stdout."""
    if len(argv) != 2 or argv[0] != "flops-table":
        print("usage: python -m zoo_node.worker.metering flops-table RUNSPEC.toml", file=sys.stderr)
        return 2
    from zoo_node.errors import ZooError
    from zoo_node.runspec import load_runspec

    try:
        table = flops_per_sample_table(load_runspec(argv[1]))
    except (ZooError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(table, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

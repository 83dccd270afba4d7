"""Metering: FLOPs and MFU against a hand calculation, the peak table, calibration, CPU-seconds without NVML."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from zoo_node.model import Partition, get_preset
from zoo_node.peaks import (
    PEAK_TFLOPS,
    format_device_label,
    normalise_gpu_name,
    parse_device_label,
    table_peak_flops,
)
from zoo_node.runspec import RunSpec
from zoo_node.worker.metering import (
    DeviceInfo,
    NvmlProbe,
    WorkMeter,
    calibrate_peak_flops,
    detect_device,
    flops_per_sample_table,
    gpu_device_info,
    mfu,
    shard_flops_per_token,
)

# zen-3-tiny by hand: d 128, 4 layers, 4 heads of 32, 2 KV heads, SwiGLU FFN 384, vocab 512, full attention.
#   attention projections per layer: 128 * (128 + 2 * 64) + 128 * 128 = 49,152
#   SwiGLU per layer:               3 * 128 * 384                    = 147,456
#   LM head:                        512 * 128                        = 65,536
#   N = 4 * (49,152 + 147,456) + 65,536 = 851,968;  6 N = 5,111,808
#   attention scores and values:    12 * 4 heads * 32 * T per layer, T = 64, 4 layers = 393,216
HAND_FLOPS_PER_TOKEN_TINY_T64 = 5_111_808 + 393_216  # 5,505,024


def test_flops_of_a_known_step_equal_the_hand_calculation() -> None:
    from zoo_node.model import flops_per_token

    fpt = flops_per_token(get_preset("zen-3-tiny"), 64)
    assert fpt == HAND_FLOPS_PER_TOKEN_TINY_T64
    # A step of 8 sequences of 64 tokens in 0.5 s on a device of 1 TFLOP/s (peak given, not measured).
    device = DeviceInfo("gpu", "test device", 1, 1e12, measured=False)
    meter = WorkMeter(device, fpt)
    step = meter.record_step(tokens=8 * 64, seconds=0.5)
    assert step.flops == 512 * 5_505_024  # 2,818,572,288
    assert step.mfu == pytest.approx(2_818_572_288 / 0.5 / 1e12)  # 0.005637...
    assert step.mfu == pytest.approx(0.005637144576)


def test_epoch_mfu_is_flops_over_step_seconds_times_peak_of_all_devices() -> None:
    ticks = iter([100.0, 130.0])  # the epoch starts at 100 and closes at 130: 30 s held
    device = DeviceInfo("gpu", "test device", 4, 2e12, measured=False)
    meter = WorkMeter(device, 1000.0, clock=lambda: next(ticks), cpu_clock=lambda: 0.0)
    meter.record_step(tokens=1_000_000, seconds=2.0)
    meter.record_step(tokens=3_000_000, seconds=3.0)
    epoch = meter.close_epoch()
    assert epoch.steps == 2 and epoch.tokens == 4_000_000
    assert epoch.flops == 4e9
    assert epoch.step_seconds == 5.0 and epoch.wall_seconds == 30.0
    assert epoch.mfu == pytest.approx(4e9 / 5.0 / (4 * 2e12))
    # GPU-seconds: the time the shard was held, times the GPUs; no NVML here, and the report says so.
    assert epoch.device_seconds_label == "gpu-seconds"
    assert epoch.device_seconds == 120.0 and epoch.device_hours == pytest.approx(120 / 3600)
    assert epoch.evidence["source"] == "none"


def test_shard_flops_come_from_the_model_for_each_shard_of_a_run() -> None:
    from zoo_node.model import flops_per_token

    spec = RunSpec(name="t", model="zen-3-tiny-moe")
    config = get_preset("zen-3-tiny-moe")
    partition = Partition.even(config, 2, 2)
    table = flops_per_sample_table(spec)
    assert set(table) == {"stage/0", "stage/1", "experts/0/0", "experts/0/1", "experts/1/0", "experts/1/1"}
    for name, per_sample in table.items():
        expected = flops_per_token(config, 64, shard=partition.shard(config, name))
        assert per_sample == 64 * expected
        assert shard_flops_per_token(spec, name) == expected
    # The shards add up to the whole model (uniform routing over the expert groups).
    assert sum(table.values()) == pytest.approx(64 * flops_per_token(config, 64), rel=1e-9)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 141GB HBM3e", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "RTX 3090"),
    ],
)
def test_known_gpu_names_map_to_the_peak_table(name: str, model: str) -> None:
    assert normalise_gpu_name(name) == model
    assert table_peak_flops(name) == PEAK_TFLOPS[model] * 1e12


@pytest.mark.parametrize(
    "name", ["NVIDIA L40", "NVIDIA GeForce RTX 3090 Ti", "NVIDIA GH200 480GB", "Tesla V100-SXM2-16GB", "AMD MI300X", ""]
)
def test_devices_not_in_the_table_are_unknown(name: str) -> None:
    assert normalise_gpu_name(name) is None
    assert table_peak_flops(name) is None


def test_calibration_measures_the_cpu_and_marks_it_measured() -> None:
    device = detect_device("cpu", calibrate=lambda d: calibrate_peak_flops(d, size=256, min_seconds=0.05))
    assert device.kind == "cpu" and device.measured and device.model is None
    # A real measurement of a real CPU: more than 100 MFLOP/s, less than the ceiling of any CPU.
    assert 1e8 < device.peak_flops < 20e12
    name, count, measured = parse_device_label(device.label)
    assert (name, count) == ("cpu", 1) and measured == pytest.approx(device.peak_flops, rel=1e-2, abs=1e9)


def test_unknown_gpu_is_calibrated_and_known_one_is_not() -> None:
    calls: list[str] = []

    def calibrate(device: str) -> float:
        calls.append(device)
        return 123e12

    known = gpu_device_info("NVIDIA H100 80GB HBM3", count=8, torch_device="cuda:1", calibrate=calibrate)
    assert calls == [] and not known.measured and known.model == "H100 SXM"
    assert known.total_peak_flops == 8 * 989e12
    assert known.label == "NVIDIA H100 80GB HBM3 x8" and parse_device_label(known.label)[2] is None
    unknown = gpu_device_info("NVIDIA L40", count=1, torch_device="cuda:1", calibrate=calibrate)
    assert calls == ["cuda:1"] and unknown.measured and unknown.model is None
    assert unknown.peak_flops == 123e12
    assert unknown.label == "NVIDIA L40 x1 (measured 123 TFLOP/s)"
    assert parse_device_label(unknown.label) == ("NVIDIA L40", 1, pytest.approx(123e12))


def test_device_labels_round_trip_and_reject_garbage() -> None:
    assert parse_device_label(format_device_label("cpu", 1, 1.5e11)) == ("cpu", 1, pytest.approx(1.5e11))
    assert format_device_label("cpu", 1, 4.1234e9) == "cpu x1 (measured 0.004123 TFLOP/s)"
    assert parse_device_label("NVIDIA H200 x2") == ("NVIDIA H200", 2, None)
    assert parse_device_label("eight GPUs") is None


def test_no_nvml_on_this_machine_means_cpu_seconds_not_an_error() -> None:
    assert NvmlProbe.open() is None  # no NVIDIA driver here: normal, not an error
    device = DeviceInfo("cpu", "test cpu", 1, 1e11, True)
    meter = WorkMeter(device, 1000.0, nvml=NvmlProbe.open())
    # Burn some CPU so the process's CPU time moves.
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    meter.record_step(1000, 0.05)
    epoch = meter.close_epoch()
    assert epoch.device_seconds_label == "cpu-seconds"
    assert epoch.evidence["source"] == "process_time"
    assert epoch.device_seconds >= 0.05 and epoch.device_seconds == epoch.evidence["cpu_seconds"]


def test_step_context_times_the_step() -> None:
    device = DeviceInfo("cpu", "test cpu", 1, 1e11, True)
    meter = WorkMeter(device, 10.0)
    with meter.step(tokens=100) as result:
        deadline = time.perf_counter() + 0.02
        while time.perf_counter() < deadline:
            pass
    assert result[0].seconds >= 0.02 and result[0].flops == 1000.0
    assert meter.close_epoch().step_seconds == result[0].seconds


def test_bad_figures_are_refused() -> None:
    device = DeviceInfo("cpu", "test cpu", 1, 1e11, True)
    with pytest.raises(ValueError, match="flops_per_token"):
        WorkMeter(device, 0)
    with pytest.raises(ValueError, match="-1 tokens"):
        WorkMeter(device, 1.0).record_step(-1, 1.0)
    assert mfu(1.0, 0.0, 1e12) == 0.0


def test_flops_table_command_prints_the_table(tmp_path) -> None:
    from zoo_node.runspec import dump_runspec

    spec = RunSpec(name="t", model="zen-3-tiny")
    path = tmp_path / "run.toml"
    path.write_text(dump_runspec(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_node.worker.metering", "flops-table", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads(proc.stdout) == flops_per_sample_table(spec)
    bad = subprocess.run(
        [sys.executable, "-m", "zoo_node.worker.metering", "flops-table", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "missing.toml" in bad.stderr


def test_nvml_evidence_is_energy_deltas_and_pid_sightings() -> None:
    """The arithmetic of the GPU evidence, on readings as NVML gives them (no GPU on this machine to read)."""
    from zoo_node.worker.metering import GpuSample, NvmlSample, nvml_evidence

    first = NvmlSample(10.0, (GpuSample("GPU-a", "NVIDIA H200", 5_000_000, True), GpuSample("GPU-b", "x", None, False)))
    last = NvmlSample(70.0, (GpuSample("GPU-a", "NVIDIA H200", 8_500_000, True), GpuSample("GPU-b", "x", None, True)))
    evidence = nvml_evidence(first, last, {"GPU-a": 3, "GPU-b": 1}, samples=3)
    assert evidence["source"] == "nvml" and evidence["seconds"] == 60.0
    a, b = evidence["gpus"]
    assert a == {"uuid": "GPU-a", "name": "NVIDIA H200", "energy_j": 3500.0, "pid_seen": 3, "samples": 3}
    assert b["energy_j"] is None and b["pid_seen"] == 1  # a GPU without an energy counter (pre-Volta)

"""Peak FLOP/s of compute devices: the table of DESIGN.md and the normalisation of driver device names.

Shared by the worker's metering (MFU) and the coordinator's settlement (a device cannot have done more than its
peak), so it imports nothing heavy.
"""

from __future__ import annotations

import functools
import re

# Peak dense bf16 tensor-core throughput (TFLOP/s, without sparsity) by GPU model.
PEAK_TFLOPS: dict[str, float] = {
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}

# The fastest device in the table: the ceiling for a GPU model settlement does not know.
MAX_GPU_PEAK_FLOPS = max(PEAK_TFLOPS.values()) * 1e12
# The ceiling for a CPU node (registered GPU count 0): generous (a 2-socket, 192-core AVX-512 server in fp32 is
# below 20 TFLOP/s), so that no honest CPU node is refused while a claim of GPU-scale work on a CPU is.
CPU_PEAK_CEILING_FLOPS = 20e12

# A driver's device name reduced to its distinctive tokens (vendor, brand, memory size and memory type dropped)
# -> the table's model. Strict on purpose: "H100 NVL", "L40" (not L40S) or "RTX 3090 Ti" must not borrow a
# neighbour's peak; anything unlisted is unknown (the worker calibrates it).
_MODEL_TOKENS: dict[frozenset[str], str] = {
    frozenset({"H100"}): "H100 SXM",  # "NVIDIA H100 80GB HBM3" is the SXM5 board
    frozenset({"H100", "SXM"}): "H100 SXM",
    frozenset({"H100", "SXM5"}): "H100 SXM",
    frozenset({"H100", "PCIE"}): "H100 PCIe",
    frozenset({"H100", "NVL"}): "H100 NVL",
    frozenset({"H200"}): "H200",
    frozenset({"H200", "SXM"}): "H200",
    frozenset({"A100"}): "A100",
    frozenset({"A100", "SXM4"}): "A100",
    frozenset({"A100", "SXM"}): "A100",
    frozenset({"A100", "PCIE"}): "A100",
    frozenset({"L40S"}): "L40S",
    frozenset({"RTX", "4090"}): "RTX 4090",
    frozenset({"RTX", "3090"}): "RTX 3090",
}
_IGNORED_TOKENS = frozenset({"NVIDIA", "GEFORCE", "TESLA", "HBM", "HBM2", "HBM2E", "HBM3", "HBM3E"})
_MEMORY_TOKEN = re.compile(r"^\d+(GB|G|GIB)$")


@functools.lru_cache(maxsize=256)
def normalise_gpu_name(name: str) -> str | None:
    """The table's model for a driver's device name ("NVIDIA H100 80GB HBM3" -> "H100 SXM"), or None."""
    tokens = {t for t in re.split(r"[^A-Z0-9]+", name.upper()) if t}
    tokens = {t for t in tokens if t not in _IGNORED_TOKENS and not _MEMORY_TOKEN.match(t)}
    return _MODEL_TOKENS.get(frozenset(tokens))


def table_peak_flops(name: str) -> float | None:
    """Peak FLOP/s of one device of this name from the table, or None for a device not in it."""
    model = normalise_gpu_name(name)
    return None if model is None else PEAK_TFLOPS[model] * 1e12


_LABEL = re.compile(r"^(?P<name>.+?) x(?P<count>\d+)(?: \(measured (?P<tflops>[0-9]+(?:\.[0-9]+)?) TFLOP/s\))?$")


def format_device_label(name: str, count: int, measured_flops: float | None = None) -> str:
    """A receipt's `device`: "NVIDIA H100 80GB HBM3 x8", or "cpu x1 (measured 0.152 TFLOP/s)" for a device whose
    peak a calibration GEMM measured."""
    label = f"{name} x{count}"
    if measured_flops is not None:
        tflops = f"{measured_flops / 1e12:.6f}".rstrip("0").rstrip(".")  # 1 MFLOP/s resolution, a CPU's too
        label += f" (measured {tflops} TFLOP/s)"
    return label


def parse_device_label(label: str) -> tuple[str, int, float | None] | None:
    """(name, count, measured FLOP/s or None) of a device label, or None when it is not in that format."""
    match = _LABEL.match(label.strip())
    if match is None:
        return None
    tflops = match.group("tflops")
    return match.group("name"), int(match.group("count")), (None if tflops is None else float(tflops) * 1e12)

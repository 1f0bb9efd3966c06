"""Simulated NVIDIA devices for :mod:`sacred_gpu.testing.fake_nvml`: what NVML would report, as plain attributes a
test (or the demo) changes between samples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class FakeGpu:
    """One simulated device; values are what NVML would report."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total_bytes: int = 80 * 1024**3
    memory_used_bytes: int = 0
    pci_bus_id: str = "00000000:00:00.0"
    compute_capability: tuple[int, int] = (9, 0)
    util_pct: int = 0
    mem_util_pct: int = 0
    power_mw: int = 70_000
    power_limit_mw: int = 700_000
    energy_mj: float = 1_000_000.0  #: total since the driver loaded; advances with ``power_mw`` in real time
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    clocks_event_reasons: int = 0
    fan_pct: int = 30
    temp_c: int = 35
    pcie_tx_kib_s: int = 0  #: what the 20 ms ``nvmlDeviceGetPcieThroughput`` reports; the byte counters advance at it
    pcie_rx_kib_s: int = 0
    pcie_block_s: float = 0.0  #: how long ``nvmlDeviceGetPcieThroughput`` blocks (real drivers: ~0.02 s)
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)  #: (pid, bytes used) per process
    mig: list[FakeGpu] = field(default_factory=list)  #: MIG instances (only memory is read from them)
    #: a MIG instance's GPU-instance id (default: its position + 1) and compute-instance id, as nvidia-smi shows them
    gpu_instance_id: int | None = None
    compute_instance_id: int = 0
    unsupported: set[str] = field(default_factory=set)  #: NVML function names raising NotSupported
    no_permission: bool = False  #: this process may not open it (device cgroup): its handle raises NoPermission
    lost: bool = False
    _energy_clock: float = field(default_factory=time.monotonic, repr=False)
    _pcie_bytes: list[float] = field(default_factory=lambda: [0.0, 0.0], repr=False)  #: TX, RX counters
    _pcie_clock: float = field(default_factory=time.monotonic, repr=False)


def two_gpus() -> list[FakeGpu]:
    """Two different GPUs, as on a typical workstation."""
    return [
        FakeGpu(uuid="GPU-11111111-aaaa-bbbb-cccc-000000000000", pci_bus_id="00000000:17:00.0"),
        FakeGpu(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-22222222-aaaa-bbbb-cccc-000000000000",
            memory_total_bytes=40 * 1024**3,
            pci_bus_id="00000000:65:00.0",
            compute_capability=(8, 0),
        ),
    ]

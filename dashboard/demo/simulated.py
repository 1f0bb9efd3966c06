"""Simulated GPUs for the demo on machines without an NVIDIA GPU, busy as each run says."""

from __future__ import annotations

import logging
import os
import random
import threading

from sacred_gpu.sampling.gpu import Nvml
from sacred_gpu.testing.fake_nvml import FakeGpu

logger = logging.getLogger(__name__)

#: Model name of the simulated GPUs (on machines without an NVIDIA GPU).
SIMULATED_GPU = "NVIDIA H100 80GB HBM3 (simulated)"


def real_gpu_present() -> bool:
    """Whether NVML finds at least one NVIDIA GPU here."""
    nvml = Nvml.open()
    if nvml is None:
        return False
    try:
        return nvml.device_count() > 0
    finally:
        nvml.close()


def simulated_gpus() -> list[FakeGpu]:
    """Two identical simulated GPUs, idle, named :data:`SIMULATED_GPU`."""
    return [FakeGpu(name=SIMULATED_GPU, uuid=f"GPU-0000000{i}-5151-4d11-a7ed-000000000000",
                    pci_bus_id=f"00000000:{0x17 + 0x4E * i:02X}:00.0") for i in range(2)]


class SimulatedLoad:
    """While a run goes, moves simulated GPUs' readings as a training job would (utilisation, memory, power,
    temperature, clocks, PCIe traffic), a step every ``period`` seconds; ``levels``: each GPU's busyness, 0 to 1."""

    def __init__(self, gpus: list[FakeGpu], levels: tuple[float, ...], *, seed: int = 0, period: float = 0.25):
        self.gpus, self.levels, self.period = gpus, levels, period
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sacred-gpu-demo-load", daemon=True)

    def __enter__(self) -> SimulatedLoad:
        if self.gpus:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for gpu, level in zip(self.gpus, self.levels):
                self.step(gpu, level)
            self._stop.wait(self.period)

    def step(self, gpu: FakeGpu, level: float) -> None:
        """One change of ``gpu``'s readings towards a load of ``level``."""
        busy = level * self._random.uniform(0.8, 1.0)
        target_used = int(level * 0.45 * gpu.memory_total_bytes)
        gpu.memory_used_bytes += (target_used - gpu.memory_used_bytes) // 3  # allocations ramp up
        gpu.util_pct, gpu.mem_util_pct = round(100 * busy), round(40 * busy)
        gpu.power_mw = int(70_000 + busy * 0.8 * (gpu.power_limit_mw - 70_000))
        gpu.temp_c += round((35 + 45 * level - gpu.temp_c) * 0.2)
        gpu.fan_pct = min(100, 30 + 2 * max(0, gpu.temp_c - 40))
        gpu.sm_clock_mhz = 1980 if gpu.temp_c < 70 else 1755
        gpu.clocks_event_reasons = 0 if gpu.temp_c < 70 else 0x20  # NVML's software thermal slowdown bit
        gpu.pcie_rx_kib_s = int(busy * self._random.uniform(0.5, 1.5) * 2_000_000)
        gpu.pcie_tx_kib_s = int(busy * self._random.uniform(0.5, 1.5) * 200_000)
        gpu.processes = [(os.getpid(), gpu.memory_used_bytes)] if level else []

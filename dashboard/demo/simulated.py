"""Simulated GPUs for the demo on machines without an NVIDIA GPU, busy as each run says."""

from __future__ import annotations

import logging
import os
import threading
import time

from sacred_gpu.sampling.gpu import Nvml
from sacred_gpu.testing.fake_gpus import FakeGpu, Workload

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
    """While a run goes, moves simulated GPUs' readings as a training job would, every ``period`` seconds.

    Each GPU follows a :class:`~sacred_gpu.testing.fake_gpus.Workload` drawn from the run's ``seed`` (phases of
    ``epoch_s`` seconds, about: data loading, training, evaluation; memory ramp, power, lagging temperature), so two
    runs' curves differ; ``levels``: each GPU's busyness on the training plateau, 0 to 1 (0: idle).
    """

    def __init__(self, gpus: list[FakeGpu], levels: tuple[float, ...], *, seed: int = 0, epoch_s: float = 2.0,
                 period: float = 0.05) -> None:
        self.gpus, self.period = gpus, period
        self.workloads = [Workload.for_run(seed, level, epoch_s=epoch_s, device=i) for i, level in enumerate(levels)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sacred-gpu-demo-load", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> SimulatedLoad:
        if self.gpus:
            self._started = time.monotonic()
            self.step(0.0)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.step(time.monotonic() - self._started)

    def step(self, t: float) -> None:
        """Set every GPU's readings to its workload's at the run's time ``t`` (s)."""
        for gpu, workload in zip(self.gpus, self.workloads):
            workload.apply(gpu, t, os.getpid())

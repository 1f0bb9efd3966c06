"""Simulated NVIDIA devices for :mod:`sacred_gpu.testing.fake_nvml`: what NVML would report, as plain attributes a
test (or the demo) changes between samples."""

from __future__ import annotations

import math
import random
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


#: NVML clocks-event bits the workload sets (see ``sacred_gpu.schema.catalog.THROTTLE_BITS``).
GPU_IDLE, SW_POWER_CAP, SW_THERMAL_SLOWDOWN = 0x1, 0x4, 0x20


@dataclass
class Workload:
    """How a simulated training job loads one GPU over the job's time ``t`` (s), phase by phase.

    After ``ramp_s`` of start-up (memory allocated step by step, little compute), every ``epoch_s`` repeats: data
    loading (utilization dips, PCIe receives), training (a plateau at ``level``), evaluation (a dip to about half).
    Power follows utilization; temperature follows power with a lag of ``lag_s`` (first order); fan and clocks follow
    temperature and power (thermal slowdown above 80 °C, the power cap near the limit). ``level`` 0 is an idle GPU.
    :meth:`for_run` draws a job's parameters from a seed, so two runs' curves differ.
    """

    level: float = 0.9  #: utilization on the training plateau, 0 to 1
    epoch_s: float = 2.0
    ramp_s: float = 1.5
    memory_frac: float = 0.4  #: of the GPU's memory, once allocated
    lag_s: float = 4.0
    ambient_c: float = 32.0
    c_per_w: float = 0.075  #: steady temperature rise per watt drawn, °C/W
    loading_frac: float = 0.15  #: of an epoch
    eval_frac: float = 0.2
    seed: int = 0
    _temp_c: float | None = field(default=None, repr=False)
    _last_t: float = field(default=0.0, repr=False)

    @classmethod
    def for_run(cls, seed: int, level: float, *, epoch_s: float = 2.0, device: int = 0) -> Workload:
        """The job of the run seeded ``seed`` on its GPU ``device``: the devices of one run share its epochs."""
        job, own = random.Random(seed), random.Random(seed * 1009 + device)
        return cls(level=level * own.uniform(0.85, 1.0), epoch_s=epoch_s * job.uniform(0.75, 1.3),
                   ramp_s=epoch_s * job.uniform(0.5, 1.0), memory_frac=job.uniform(0.25, 0.7) * own.uniform(0.9, 1),
                   lag_s=epoch_s * own.uniform(1.5, 2.5), ambient_c=own.uniform(28.0, 38.0),
                   c_per_w=own.uniform(0.065, 0.085), loading_frac=job.uniform(0.1, 0.2),
                   eval_frac=job.uniform(0.15, 0.25), seed=seed * 1009 + device)

    def phase(self, t: float) -> str:
        """``idle``, ``starting``, ``loading``, ``training`` or ``evaluating`` at the job's time ``t`` (s)."""
        if self.level <= 0:
            return "idle"
        if t < self.ramp_s:
            return "starting"
        position = ((t - self.ramp_s) % self.epoch_s) / self.epoch_s
        return "loading" if position < self.loading_frac else "evaluating" if position > 1 - self.eval_frac \
            else "training"

    def utilization(self, t: float) -> float:
        """Kernel-busy fraction at ``t``, 0 to 1, without noise."""
        return {"idle": 0.0, "starting": 0.08, "loading": 0.15, "training": 1.0, "evaluating": 0.5}[self.phase(t)] \
            * self.level

    def apply(self, gpu: FakeGpu, t: float, pid: int) -> None:
        """Set ``gpu``'s readings to the job's at ``t`` (s, increasing between calls); ``pid``: the job's process."""
        noise = random.Random(f"{self.seed}:{round(t, 2)}")
        phase, busy = self.phase(t), self.utilization(t) * noise.uniform(0.93, 1.0)
        allocated = min(1.0, t / self.ramp_s) if self.level > 0 else 0.0
        extra = 0.04 if phase == "evaluating" else 0.0  # evaluation batches' activations
        gpu.memory_used_bytes = int(gpu.memory_total_bytes * self.memory_frac * (allocated + extra))
        gpu.util_pct, gpu.mem_util_pct = round(100 * busy), round(100 * busy * noise.uniform(0.35, 0.5))
        idle_w, limit_w = 70.0, gpu.power_limit_mw / 1000
        power_w = min(limit_w, idle_w + (0.97 * limit_w - idle_w) * busy ** 1.2 * noise.uniform(0.96, 1.04))
        gpu.power_mw = int(power_w * 1000)
        steady = self.ambient_c + self.c_per_w * power_w
        if self._temp_c is None:
            self._temp_c = self.ambient_c + self.c_per_w * idle_w
        self._temp_c += (steady - self._temp_c) * (1 - math.exp(-max(0.0, t - self._last_t) / self.lag_s))
        self._last_t = t
        gpu.temp_c = round(self._temp_c)
        gpu.fan_pct = int(min(100, max(30, 30 + 2.2 * (self._temp_c - 45))))
        hot, capped = self._temp_c > 80, power_w > 0.95 * limit_w
        gpu.clocks_event_reasons = (GPU_IDLE if busy == 0 else 0) | (SW_THERMAL_SLOWDOWN if hot else 0) | \
            (SW_POWER_CAP if capped else 0)
        gpu.sm_clock_mhz = 345 if busy == 0 else 1755 if hot else 1830 if capped else 1980
        gpu.mem_clock_mhz = 1593 if busy == 0 else 2619
        receiving = {"loading": 6.0, "starting": 3.0}.get(phase, 0.4 if phase == "training" else 0.8)
        gpu.pcie_rx_kib_s = int(receiving * self.level * noise.uniform(0.8, 1.2) * 1_000_000)
        gpu.pcie_tx_kib_s = int((0.6 if phase == "evaluating" else 0.1) * self.level * noise.uniform(0.8, 1.2)
                                * 1_000_000)
        gpu.processes = [(pid, gpu.memory_used_bytes)] if self.level > 0 else []

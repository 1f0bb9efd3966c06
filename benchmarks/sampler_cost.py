"""CPU time of one sampler tick (target: at most 0.5 ms without GPUs; under 1 ms per GPU on real hardware).

    python benchmarks/sampler_cost.py [--ticks 3000] [--real-gpu]

Measures thread CPU time (``time.thread_time``) around ``Sampler.tick``, with the fast/slow mix of the defaults
(one slow tick in ten). Rows: the host alone (psutil, this machine); the host plus two simulated GPUs (our own
overhead per NVML field, not the driver's); and with ``--real-gpu`` the real NVML path on this machine's GPUs.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from sacred_gpu.sampling.gpu_collector import GpuCollector
from sacred_gpu.sampling.host import HostCollector, ProcessTree
from sacred_gpu.sampling.sampler import Sampler
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus


def measure(collectors, ticks: int, slow_every: int = 10) -> tuple[float, float, int]:
    """Median and mean CPU ms per tick over ``ticks`` ticks, and the number of fields per sample."""
    sampler = Sampler(collectors, interval=1.0, slow_interval=float(slow_every))
    sampler.open()
    sampler.tick(slow=True)  # warm up: first reads prime counters
    costs, fields = [], 0
    for tick in range(ticks):
        before = sampler.cpu_seconds
        sample = sampler.tick(slow=tick % slow_every == 0)
        costs.append((sampler.cpu_seconds - before) * 1000)
        fields = max(fields, len(sample.values))
        if tick % 500 == 0:
            sampler.drain()
    sampler.stop()
    return statistics.median(costs), statistics.fmean(costs), fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--real-gpu", action="store_true", help="also measure the real NVML path")
    args = parser.parse_args()

    rows = [("host only (psutil)", [HostCollector(ProcessTree())], None)]
    rows.append(("host + 2 simulated GPUs", [HostCollector(ProcessTree()), GpuCollector(FakeNvml(two_gpus()))], 2))
    if args.real_gpu:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        rows.append((f"real NVML, {count} GPU(s), no host", [GpuCollector()], count))
        rows.append((f"host + real NVML, {count} GPU(s)", [HostCollector(ProcessTree()), GpuCollector()], count))

    print(f"{'collectors':<34} {'median ms/tick':>15} {'mean ms/tick':>13} {'fields':>7} {'ms/GPU (mean)':>14}")
    host_mean = None
    for label, collectors, gpus in rows:
        median, mean, fields = measure(collectors, args.ticks)
        per_gpu = ""
        if gpus:
            base = 0.0 if label.startswith("real NVML") else (host_mean or 0.0)
            per_gpu = f"{(mean - base) / gpus:.3f}"
        if gpus is None:
            host_mean = mean
        print(f"{label:<34} {median:>15.3f} {mean:>13.3f} {fields:>7} {per_gpu:>14}")
    print(f"target: host-only mean <= 0.5 ms per tick -> {'MET' if host_mean <= 0.5 else 'NOT MET'} "
          f"({host_mean:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

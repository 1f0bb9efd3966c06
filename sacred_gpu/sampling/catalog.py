"""Every system metric sacred-gpu samples: its name (units in the name), tier, source and window summary.

Names are ``sys/<device>/<field>_<unit>``; ``{i}`` is the GPU's NVML index, ``{j}`` a MIG instance. No name has a
``.`` or a leading ``$``. The README table is generated from :data:`CATALOG` (``sacred-gpu metrics-table``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Tier = Literal["fast", "slow"]
#: How the samples of one heartbeat window become one point: mean, max, last value, or bitwise OR (bit masks).
Window = Literal["mean", "max", "last", "or"]

PREFIX = "sys/"


@dataclass(frozen=True)
class MetricSpec:
    """One system metric."""

    name: str  #: e.g. ``sys/gpu{i}/util_pct``
    unit: str
    tier: Tier
    window: Window
    source: str
    description: str


def _gpu(field: str, unit: str, tier: Tier, window: Window, source: str, description: str) -> MetricSpec:
    return MetricSpec(f"sys/gpu{{i}}/{field}", unit, tier, window, source, description)


CATALOG: tuple[MetricSpec, ...] = (
    _gpu("util_pct", "%", "fast", "mean", "nvmlDeviceGetUtilizationRates().gpu", "time a kernel was running"),
    _gpu("mem_util_pct", "%", "fast", "mean", "nvmlDeviceGetUtilizationRates().memory",
         "time device memory was read or written (bandwidth utilization)"),
    _gpu("mem_used_mib", "MiB", "fast", "max", "nvmlDeviceGetMemoryInfo(v2).used", "memory used, all processes"),
    _gpu("power_w", "W", "fast", "mean", "nvmlDeviceGetPowerUsage", "power draw"),
    _gpu("energy_j", "J", "fast", "last", "nvmlDeviceGetTotalEnergyConsumption", "energy used since the run started"),
    _gpu("sm_clock_mhz", "MHz", "fast", "mean", "nvmlDeviceGetClockInfo(SM)", "streaming multiprocessor clock"),
    _gpu("mem_clock_mhz", "MHz", "fast", "mean", "nvmlDeviceGetClockInfo(MEM)", "memory clock"),
    _gpu("throttle_reasons", "bitmask", "fast", "or", "nvmlDeviceGetCurrentClocksEventReasons",
         "why clocks were lowered (NVML clocks-event bits, OR over the window)"),
    _gpu("fan_pct", "%", "fast", "mean", "nvmlDeviceGetFanSpeed", "fan speed (absent on passively cooled GPUs)"),
    _gpu("mem_total_mib", "MiB", "slow", "last", "nvmlDeviceGetMemoryInfo(v2).total", "memory size"),
    _gpu("power_limit_w", "W", "slow", "last", "nvmlDeviceGetEnforcedPowerLimit", "enforced power limit"),
    _gpu("temp_c", "°C", "slow", "max", "nvmlDeviceGetTemperature(GPU)", "GPU die temperature"),
    _gpu("pcie_tx_mib_s", "MiB/s", "slow", "mean", "nvmlDeviceGetPcieThroughput(TX)", "PCIe sent by the GPU"),
    _gpu("pcie_rx_mib_s", "MiB/s", "slow", "mean", "nvmlDeviceGetPcieThroughput(RX)", "PCIe received by the GPU"),
    _gpu("ecc_corrected", "errors", "slow", "last", "nvmlDeviceGetTotalEccErrors(CORRECTED, VOLATILE)",
         "corrected ECC errors since the driver loaded"),
    _gpu("ecc_uncorrected", "errors", "slow", "last", "nvmlDeviceGetTotalEccErrors(UNCORRECTED, VOLATILE)",
         "uncorrected ECC errors since the driver loaded"),
    _gpu("proc_mem_mib", "MiB", "slow", "max", "nvmlDeviceGet{Compute,Graphics}RunningProcesses",
         "memory used by the training process and its children (DataLoader workers)"),
    MetricSpec("sys/gpu{i}/mig{j}/mem_used_mib", "MiB", "fast", "max", "nvmlDeviceGetMemoryInfo(MIG device)",
               "memory used in a MIG instance"),
    MetricSpec("sys/gpu{i}/mig{j}/mem_total_mib", "MiB", "slow", "last", "nvmlDeviceGetMemoryInfo(MIG device)",
               "memory size of a MIG instance"),
    MetricSpec("sys/cpu/util_pct", "%", "fast", "mean", "psutil.cpu_percent", "system CPU utilization, all cores"),
    MetricSpec("sys/proc/cpu_pct", "% of a core", "fast", "mean", "psutil.Process.cpu_percent",
               "CPU used by the training process and its children"),
    MetricSpec("sys/proc/rss_mib", "MiB", "fast", "max", "psutil.Process.memory_info().rss",
               "resident memory of the training process and its children"),
    MetricSpec("sys/proc/threads", "threads", "fast", "max", "psutil.Process.num_threads",
               "threads of the training process and its children"),
    MetricSpec("sys/proc/count", "processes", "fast", "max", "psutil.Process.children",
               "the training process and its children"),
    MetricSpec("sys/mem/used_mib", "MiB", "fast", "max", "psutil.virtual_memory / cgroup memory.current",
               "RAM used (the container's, where a cgroup limit applies)"),
    MetricSpec("sys/mem/available_mib", "MiB", "fast", "mean", "psutil.virtual_memory / cgroup memory.max",
               "RAM available (to the container, where a cgroup limit applies)"),
    MetricSpec("sys/mem/used_pct", "%", "fast", "max", "psutil.virtual_memory / cgroup", "RAM used, % of the limit"),
    MetricSpec("sys/swap/used_mib", "MiB", "fast", "max", "psutil.swap_memory", "swap used"),
    MetricSpec("sys/disk/read_mib_s", "MiB/s", "fast", "mean", "psutil.disk_io_counters", "disk reads, all disks"),
    MetricSpec("sys/disk/write_mib_s", "MiB/s", "fast", "mean", "psutil.disk_io_counters", "disk writes, all disks"),
    MetricSpec("sys/net/rx_mib_s", "MiB/s", "fast", "mean", "psutil.net_io_counters", "network received"),
    MetricSpec("sys/net/tx_mib_s", "MiB/s", "fast", "mean", "psutil.net_io_counters", "network sent"),
    MetricSpec("sys/disk/workdir_used_pct", "%", "slow", "last", "psutil.disk_usage(cwd)",
               "disk usage of the working directory's file system"),
    MetricSpec("sys/disk/workdir_free_gib", "GiB", "slow", "last", "psutil.disk_usage(cwd)",
               "free space on the working directory's file system"),
)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"\d+").replace(r"\{j\}", r"\d+") + "$")


_PATTERNS = tuple((_pattern(spec.name), spec) for spec in CATALOG)


@lru_cache(maxsize=4096)
def spec_for(name: str) -> MetricSpec | None:
    """The catalog entry a concrete metric name (``sys/gpu1/util_pct``) belongs to, or ``None``."""
    for pattern, spec in _PATTERNS:
        if pattern.match(name):
            return spec
    return None


def markdown_table() -> str:
    """The README's table of system metrics."""
    rows = ["| name | unit | tier | window | source | what |", "| --- | --- | --- | --- | --- | --- |"]
    rows += [
        f"| `{s.name}` | {s.unit} | {s.tier} | {s.window} | `{s.source}` | {s.description} |" for s in CATALOG
    ]
    return "\n".join(rows)

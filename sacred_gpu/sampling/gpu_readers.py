"""How each GPU field is read through NVML: one reader per catalog field (``READERS``, ``MIG_READERS``), returning
the value in the unit of the field's name. Newer calls are tried first and older ones where a driver lacks them
(``_v2`` memory info, clocks-event reasons, ``TemperatureV``); PCIe traffic comes from cumulative counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sacred_gpu.sampling.gpu import MIB

Reader = Callable[[Any, Any], "float | None"]  # (pynvml module, handle) -> value


def _mismatch(lib: Any) -> type[BaseException]:
    """pynvml's error for a versioned call the driver lacks (not an ``NVMLError``); a never-raised stand-in if the
    binding has none."""
    return getattr(lib, "NVMLLibraryMismatchError", None) or _Never


class _Never(Exception):
    """Raised by nothing."""


def _memory(lib: Any, handle: Any) -> Any:
    """Memory info with v2 semantics (``used`` excludes driver-reserved memory) where the driver has it."""
    try:
        return lib.nvmlDeviceGetMemoryInfo(handle, version=lib.nvmlMemory_v2)
    except (lib.NVMLError_NotSupported, lib.NVMLError_FunctionNotFound, AttributeError, TypeError):
        return lib.nvmlDeviceGetMemoryInfo(handle)


def _clocks_event_reasons(lib: Any, handle: Any) -> int:
    """Why clocks are held down; drivers before ~R535 (and old bindings) have only the older name."""
    getter = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if getter is not None:
        try:
            return getter(handle)
        except lib.NVMLError_FunctionNotFound:
            pass
    return lib.nvmlDeviceGetCurrentClocksThrottleReasons(handle)


def running_processes(lib: Any, handle: Any) -> list[Any]:
    """Compute and graphics processes on a device (``pid``, ``usedGpuMemory`` in bytes or None): the ``_v3`` calls,
    else the ``_v2`` ones (drivers before R510, where pynvml's ``_v3`` wrappers raise ``NVMLLibraryMismatchError``)."""
    found: list[Any] = []
    for kind in ("Compute", "Graphics"):
        newest = getattr(lib, f"nvmlDeviceGet{kind}RunningProcesses")
        try:
            found += newest(handle)
        except (lib.NVMLError_FunctionNotFound, _mismatch(lib)):
            found += getattr(lib, f"nvmlDeviceGet{kind}RunningProcesses_v2")(handle)
    return found


def _temperature(lib: Any, handle: Any) -> float:
    """The GPU die temperature, °C: ``nvmlDeviceGetTemperatureV`` where the driver has it (``nvmlDeviceGetTemperature``
    is deprecated), else the older call."""
    getter = getattr(lib, "nvmlDeviceGetTemperatureV", None)
    if getter is not None:
        try:
            return getter(handle, lib.NVML_TEMPERATURE_GPU)
        except (lib.NVMLError_FunctionNotFound, lib.NVMLError_NotSupported, _mismatch(lib)):
            pass
    return lib.nvmlDeviceGetTemperature(handle, lib.NVML_TEMPERATURE_GPU)


class CounterRate:
    """A cumulative NVML byte counter (``nvmlDeviceGetFieldValues``) as MiB/s between two reads of one device; the
    first read says nothing (``None``: unknown stays unknown). Raises where the driver has no such counter."""

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name
        self._last: tuple[int, float] | None = None  # (bytes, seconds: NVML's timestamp, else ours)

    def __call__(self, lib: Any, handle: Any) -> float | None:
        (value,) = lib.nvmlDeviceGetFieldValues(handle, [getattr(lib, self.field_name)])
        if value.nvmlReturn != getattr(lib, "NVML_SUCCESS", 0):
            raise lib.NVMLError(value.nvmlReturn)
        stamp = getattr(value, "timestamp", 0)  # when NVML read the counter, µs (CPU time base)
        now, count = (stamp / 1e6 if stamp else time.monotonic()), int(value.value.ullVal)
        last, self._last = self._last, (count, now)
        if last is None or now <= last[1] or count < last[0]:  # first read, or the counter was reset
            return None
        return (count - last[0]) / (now - last[1]) / MIB


#: How each field of a whole GPU is read (its row in :mod:`sacred_gpu.schema.catalog` says its tier, unit and the
#: rest); readers return the value in the unit of the field's name. A catalog row without a reader here is not sampled;
#: ``proc_mem_mib`` is read by :meth:`GpuCollector._process_memory`.
READERS: dict[str, Reader] = {
    "util_pct": lambda lib, h: lib.nvmlDeviceGetUtilizationRates(h).gpu,
    "mem_util_pct": lambda lib, h: lib.nvmlDeviceGetUtilizationRates(h).memory,
    "mem_used_mib": lambda lib, h: _memory(lib, h).used / MIB,
    "power_w": lambda lib, h: lib.nvmlDeviceGetPowerUsage(h) / 1000,
    "energy_j": lambda lib, h: lib.nvmlDeviceGetTotalEnergyConsumption(h) / 1000,
    "sm_clock_mhz": lambda lib, h: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_SM),
    "mem_clock_mhz": lambda lib, h: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_MEM),
    "throttle_reasons": _clocks_event_reasons,
    "fan_pct": lambda lib, h: lib.nvmlDeviceGetFanSpeed(h),
    "mem_total_mib": lambda lib, h: _memory(lib, h).total / MIB,
    "power_limit_w": lambda lib, h: lib.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
    "temp_c": _temperature,
    "ecc_corrected": lambda lib, h: lib.nvmlDeviceGetTotalEccErrors(
        h, lib.NVML_MEMORY_ERROR_TYPE_CORRECTED, lib.NVML_VOLATILE_ECC),
    "ecc_uncorrected": lambda lib, h: lib.nvmlDeviceGetTotalEccErrors(
        h, lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, lib.NVML_VOLATILE_ECC),
}
#: How each field of a MIG instance is read.
MIG_READERS: dict[str, Reader] = {
    "mem_used_mib": lambda lib, h: _memory(lib, h).used / MIB,
    "mem_total_mib": lambda lib, h: _memory(lib, h).total / MIB,
}
#: The catalog field read from the running-process lists (needs the process tree's PIDs).
PROCESS_MEMORY = "proc_mem_mib"
#: PCIe traffic: NVML's cumulative byte counters, as rates between two reads (fast, non-blocking), by field id name.
PCIE_COUNTERS = {"pcie_tx_mib_s": "NVML_FI_DEV_PCIE_COUNT_TX_BYTES", "pcie_rx_mib_s": "NVML_FI_DEV_PCIE_COUNT_RX_BYTES"}
#: Where a driver has no such counters: ``nvmlDeviceGetPcieThroughput``, which blocks ~20 ms measuring over 20 ms
#: (never probed: only ever read on the sampler thread).
PCIE_THROUGHPUT: dict[str, Reader] = {
    "pcie_tx_mib_s": lambda lib, h: lib.nvmlDeviceGetPcieThroughput(h, lib.NVML_PCIE_UTIL_TX_BYTES) / 1024,
    "pcie_rx_mib_s": lambda lib, h: lib.nvmlDeviceGetPcieThroughput(h, lib.NVML_PCIE_UTIL_RX_BYTES) / 1024,
}

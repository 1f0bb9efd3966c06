"""A simulated NVML library with the ``pynvml`` API, for tests and the demo on machines without a GPU.

It raises ``pynvml``'s own error classes, so code under test takes exactly the paths it takes on real hardware.
Scenarios: :func:`two_gpus`, real driver branches (:func:`driver`, :data:`DRIVERS`), a field that is not supported
(``FakeGpu.unsupported``), a GPU lost mid-run (:meth:`FakeNvml.lose`), MIG instances (``FakeGpu.mig``), a GPU this
process may not open (``FakeGpu.no_permission``), the library missing (``FakeNvml(missing=True)``), ``nvmlInit``
failing with a given NVML error code (``FakeNvml(init_error=pynvml.NVML_ERROR_NO_PERMISSION)``), and functions an
old driver lacks (``FakeNvml(old_driver={"nvmlDeviceGetComputeRunningProcesses"})``: pynvml raises
``NVMLLibraryMismatchError`` for its versioned calls, ``NVMLError_FunctionNotFound`` for the others).
Values are plain attributes a test (or the demo) changes between samples; the energy counter advances with the
power draw in real time, as on hardware.
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from typing import Any

import pynvml

from sacred_gpu.testing.fake_gpus import FakeGpu, two_gpus

__all__ = ["DRIVERS", "FakeGpu", "FakeNvml", "driver", "two_gpus"]

NVMLError = pynvml.NVMLError
_Memory = namedtuple("_Memory", "total free used")
_Memory2 = namedtuple("_Memory2", "version total reserved free used")
_Pci = namedtuple("_Pci", "busId")
_Utilization = namedtuple("_Utilization", "gpu memory")
_Process = namedtuple("_Process", "pid usedGpuMemory")
_Value = namedtuple("_Value", "ullVal")
_FieldValue = namedtuple("_FieldValue", "fieldId nvmlReturn value timestamp")


#: What real drivers lack, by driver branch: R470 (common on clusters) has no ``_v3`` process calls (pynvml raises
#: ``NVMLLibraryMismatchError``), no clocks-event name (R535), no ``TemperatureV``, no PCIe byte counters; R525 has
#: the ``_v3`` calls and the counters but not the newer names; R550 has everything.
DRIVERS: dict[str, set[str]] = {
    "470.256.02": {"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
                   "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV", "nvmlDeviceGetFieldValues"},
    "525.147.05": {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV"},
    "550.54.15": set(),
}


def driver(version: str, gpus: list[FakeGpu] | None = None) -> FakeNvml:
    """A simulated NVML behaving as the driver ``version`` (one of :data:`DRIVERS`) does."""
    return FakeNvml(gpus, old_driver=DRIVERS[version], driver_version=version)


class FakeNvml:
    """Stands in for the ``pynvml`` module: ``Nvml.open(FakeNvml(two_gpus()))``."""

    NVMLError = NVMLError

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        missing: bool = False,
        init_error: int | None = None,
        old_driver: set[str] | None = None,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
    ) -> None:
        self.gpus = list(gpus or [])
        self.missing = missing
        self.init_error = init_error
        self.old_driver = set(old_driver or ())
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.initialised = 0
        self.init_calls = 0  #: how many times nvmlInit was called (one NVML session per run)
        self.calls = 0
        self.threads: dict[str, set[str]] = {}  #: NVML function -> names of the threads that called it

    def __getattr__(self, name: str) -> Any:
        """pynvml's constants and error classes (``NVML_CLOCK_SM``, ``NVMLError_GpuIsLost``, ``nvmlMemory_v2``)."""
        if name.startswith(("NVML", "nvmlMemory")):
            return getattr(pynvml, name)
        raise AttributeError(f"FakeNvml does not simulate {name}")

    # -- scenario control -------------------------------------------------------------------------------------
    def lose(self, index: int) -> None:
        """The GPU falls off the bus: every later call on it raises ``NVMLError_GpuIsLost``."""
        self.gpus[index].lost = True

    # -- the pynvml API ---------------------------------------------------------------------------------------
    def _check(self) -> None:
        self.calls += 1
        if self.missing:
            raise NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.initialised <= 0:
            raise NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any, function: str) -> FakeGpu:
        self._check()
        self.threads.setdefault(function, set()).add(threading.current_thread().name)
        gpu = self.gpus[handle[0]].mig[handle[1]] if isinstance(handle, tuple) else self.gpus[handle]
        if gpu.lost or (isinstance(handle, tuple) and self.gpus[handle[0]].lost):
            raise NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if function in gpu.unsupported:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if function in self.old_driver:
            if function.endswith("RunningProcesses"):  # pynvml's _v3 wrappers check the driver's version first
                raise pynvml.NVMLLibraryMismatchError(f"{function}_v3 is not supported by this driver")
            raise NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return gpu

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.missing:
            raise NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1
        self.init_calls += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._check()
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._check()
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:  # noqa: N802
        self._check()
        return self.cuda_version

    nvmlSystemGetCudaDriverVersion = nvmlSystemGetCudaDriverVersion_v2

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        self._check()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].no_permission:
            raise NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:  # noqa: N802
        return _Pci(self._gpu(handle, "nvmlDeviceGetPciInfo").pci_bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
        if version is None:  # v1: "used" includes memory the driver reserves
            return _Memory(total, total - used - 512 * 1024**2, used + 512 * 1024**2)
        return _Memory2(version, total, 512 * 1024**2, total - used - 512 * 1024**2, used)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return _Utilization(gpu.util_pct, gpu.mem_util_pct)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
        now = time.monotonic()
        gpu.energy_mj += gpu.power_mw * (now - gpu._energy_clock)
        gpu._energy_clock = now
        return int(gpu.energy_mj)

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        return gpu.sm_clock_mhz if clock == pynvml.NVML_CLOCK_SM else gpu.mem_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").clocks_event_reasons

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetCudaComputeCapability").compute_capability

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:  # noqa: N802 - the pre-R535 name
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").clocks_event_reasons

    def nvmlDeviceGetFanSpeed(self, handle: int) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetFanSpeed").fan_pct

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetTemperature").temp_c

    def nvmlDeviceGetPcieThroughput(self, handle: int, counter: int) -> int:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetPcieThroughput")
        time.sleep(gpu.pcie_block_s)  # the driver measures over 20 ms before it answers
        return gpu.pcie_tx_kib_s if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_kib_s

    def nvmlDeviceGetFieldValues(self, handle: int, field_ids: list[int]) -> list[Any]:  # noqa: N802
        """The PCIe byte counters (advancing at ``pcie_*_kib_s`` in real time); other fields: NOT_SUPPORTED each."""
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        now = time.monotonic()
        for position, rate in enumerate((gpu.pcie_tx_kib_s, gpu.pcie_rx_kib_s)):
            gpu._pcie_bytes[position] += rate * 1024 * (now - gpu._pcie_clock)
        gpu._pcie_clock = now
        counters = {pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: gpu._pcie_bytes[0],
                    pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: gpu._pcie_bytes[1]}
        return [_FieldValue(field_id, pynvml.NVML_SUCCESS if field_id in counters else
                            pynvml.NVML_ERROR_NOT_SUPPORTED, _Value(int(counters.get(field_id, 0))),
                            int(now * 1e6)) for field_id in field_ids]

    def nvmlDeviceGetTemperatureV(self, handle: int, sensor: int) -> int:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetTemperatureV").temp_c

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error_type: int, counter_type: int) -> int:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEccErrors")
        return gpu.ecc_corrected if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED else gpu.ecc_uncorrected

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [_Process(pid, used) for pid, used in gpu.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802
        self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return []

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: int) -> list[Any]:  # noqa: N802 - drivers R450+
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses_v2")
        return [_Process(pid, used) for pid, used in gpu.processes]

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: int) -> list[Any]:  # noqa: N802
        self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses_v2")
        return []

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:  # noqa: N802
        enabled = int(bool(self._gpu(handle, "nvmlDeviceGetMigMode").mig))
        return [enabled, enabled]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: int) -> int:  # noqa: N802
        return len(self._gpu(handle, "nvmlDeviceGetMaxMigDeviceCount").mig)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: int, index: int) -> tuple[int, int]:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
        if index >= len(gpu.mig):
            raise NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return (handle, index)

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:  # noqa: N802
        mig = self._gpu(handle, "nvmlDeviceGetGpuInstanceId")
        if not isinstance(handle, tuple):
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)  # a GPU, not a MIG device
        return mig.gpu_instance_id if mig.gpu_instance_id is not None else handle[1] + 1

    def nvmlDeviceGetComputeInstanceId(self, handle: Any) -> int:  # noqa: N802
        mig = self._gpu(handle, "nvmlDeviceGetComputeInstanceId")
        if not isinstance(handle, tuple):
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return mig.compute_instance_id

"""A simulated NVML library with the ``pynvml`` API, for tests and the demo on machines without a GPU.

It raises ``pynvml``'s own error classes, so code under test takes exactly the paths it takes on real hardware.
Scenarios: :func:`two_gpus`, a field that is not supported (``unsupported=``), a GPU lost mid-run
(:meth:`FakeNvml.lose`), and the library missing (``FakeNvml(missing=True)``).
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

import pynvml

NVMLError = pynvml.NVMLError
_Memory = namedtuple("_Memory", "total free used")
_Pci = namedtuple("_Pci", "busId")


@dataclass
class FakeGpu:
    """One simulated device; values are what NVML would report."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total_bytes: int = 80 * 1024**3
    memory_used_bytes: int = 0
    pci_bus_id: str = "00000000:00:00.0"
    unsupported: set[str] = field(default_factory=set)  #: NVML function names raising NotSupported
    lost: bool = False


def two_gpus() -> list[FakeGpu]:
    """Two different GPUs, as on a typical workstation."""
    return [
        FakeGpu(uuid="GPU-11111111-aaaa-bbbb-cccc-000000000000", pci_bus_id="00000000:17:00.0"),
        FakeGpu(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-22222222-aaaa-bbbb-cccc-000000000000",
            memory_total_bytes=40 * 1024**3,
            pci_bus_id="00000000:65:00.0",
        ),
    ]


class FakeNvml:
    """Stands in for the ``pynvml`` module: ``Nvml.open(FakeNvml(two_gpus()))``."""

    NVMLError = NVMLError

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        missing: bool = False,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
    ) -> None:
        self.gpus = list(gpus or [])
        self.missing = missing
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.initialised = 0
        self.calls = 0

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
        gpu = self.gpus[handle]
        if gpu.lost:
            raise NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if function in gpu.unsupported:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.missing:
            raise NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised += 1

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
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:  # noqa: N802
        return _Pci(self._gpu(handle, "nvmlDeviceGetPciInfo").pci_bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: Any = None) -> Any:  # noqa: N802
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        used = gpu.memory_used_bytes
        return _Memory(gpu.memory_total_bytes, gpu.memory_total_bytes - used, used)

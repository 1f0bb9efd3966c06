"""The NVML device layer: the one entry point for every NVML call.

NVML comes from NVIDIA's official bindings (``nvidia-ml-py``, imported as ``pynvml``). Any module with the same
API can stand in for it (``sacred_gpu.testing.fake_nvml`` does, for tests and the demo). Failures degrade per field:
an unsupported field reads as ``None``; no library or no driver means no GPUs, said once at INFO.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Callable

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


def _text(value: Any) -> str:
    """NVML strings are ``bytes`` in old bindings and ``str`` in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Nvml:
    """An initialised NVML library. Use :meth:`open`; call :meth:`close` when done."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self._closed = False

    @classmethod
    def open(cls, lib: Any = None) -> Nvml | None:
        """Initialise NVML (``lib``: a pynvml-compatible module; default ``pynvml``). ``None`` if unavailable."""
        if lib is None:
            try:
                import pynvml as lib
            except ImportError:
                logger.info("GPU metrics unavailable: the nvidia-ml-py package is not installed")
                return None
        try:
            lib.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - said below, once; the run goes on without GPU fields
            _report_init_failure(lib, exc)
            return None
        return cls(lib)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.query(self.lib.nvmlShutdown)

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call one NVML function; ``None`` if it fails (not supported, GPU lost, a call the driver lacks: any
        exception of the binding, ``NVMLLibraryMismatchError`` included, which is no ``NVMLError``)."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - degrade per field
            logger.debug("NVML %s%s failed: %s", getattr(fn, "__name__", fn), args, exc)
            return None

    def device_count(self) -> int:
        return self.query(self.lib.nvmlDeviceGetCount) or 0

    def handle(self, index: int) -> Any:
        return self.query(self.lib.nvmlDeviceGetHandleByIndex, index)

    def driver_version(self) -> str | None:
        version = self.query(self.lib.nvmlSystemGetDriverVersion)
        return None if version is None else _text(version)

    def cuda_driver_version(self) -> str | None:
        """CUDA version the driver supports, as ``"12.4"``."""
        version = self.query(self.lib.nvmlSystemGetCudaDriverVersion_v2)
        if version is None:
            version = self.query(self.lib.nvmlSystemGetCudaDriverVersion)
        return None if version is None else f"{version // 1000}.{version % 1000 // 10}"


#: What a failed ``nvmlInit`` means, by NVML error code, where it is not simply "no NVIDIA GPU here".
INIT_FAILURES = {
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "the NVIDIA driver was upgraded but the old kernel module is still loaded: "
                                          "reboot, or reload the nvidia kernel module",
    "NVML_ERROR_NO_PERMISSION": "no permission to open the GPU device files (/dev/nvidia*): check their permissions, "
                                "or the container's device access",
    "NVML_ERROR_INSUFFICIENT_POWER": "a GPU is not correctly powered (check its power cables)",
    "NVML_ERROR_IRQ_ISSUE": "the NVIDIA kernel driver reports an interrupt problem (see dmesg)",
}
#: Codes that mean there is no usable NVIDIA GPU or driver on this machine (said at INFO, not a problem).
NO_GPU = ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED")


def _report_init_failure(lib: Any, exc: BaseException) -> None:
    """Say once why NVML did not start: INFO where there is no GPU, WARNING with the remedy where there is one."""
    code = getattr(exc, "value", None)
    named = {getattr(lib, name, None): name for name in (*INIT_FAILURES, *NO_GPU)}
    name = named.get(code) if code is not None else None
    if name in INIT_FAILURES:
        logger.warning("GPU metrics unavailable: NVML could not start (%s): %s", exc, INIT_FAILURES[name])
    elif name in NO_GPU or code is None and isinstance(exc, ImportError):
        logger.info("No NVIDIA GPU found (NVML: %s); GPU fields are empty", exc)
    else:
        logger.warning("GPU metrics unavailable: NVML could not start (%s: %s)", type(exc).__name__, exc)


def cuda_order(capabilities: Sequence[tuple[int, int] | None], bus_ids: Sequence[str | None],
               order: str | None) -> list[int]:
    """NVML indices in CUDA's device order, which ``CUDA_VISIBLE_DEVICES`` indices count in (``order``: the value of
    ``CUDA_DEVICE_ORDER``). ``PCI_BUS_ID``: by PCI bus id. ``FASTEST_FIRST`` (CUDA's default): the highest compute
    capability first, PCI bus order among equals. NVML's own index "may not correlate with the CUDA device index"
    (NVML's documentation): on a machine with mixed GPUs the two differ."""
    def bus(index: int) -> tuple[str, int]:
        return (bus_ids[index] or "").lower(), index

    indices = sorted(range(len(capabilities)), key=bus)
    if (order or "").strip().upper() == "PCI_BUS_ID":
        return indices
    return sorted(indices, key=lambda index: tuple(-part for part in (capabilities[index] or (0, 0))))


def visible_indices(uuids: Sequence[str], env: str | None, *,
                    capabilities: Sequence[tuple[int, int] | None] | None = None,
                    bus_ids: Sequence[str | None] | None = None, order: str | None = None) -> list[int]:
    """NVML indices of the devices a CUDA process sees, per ``CUDA_VISIBLE_DEVICES`` (``env``).

    ``uuids`` are the devices' UUIDs in NVML index order; ``capabilities`` (compute capability) and ``bus_ids`` in the
    same order, with ``order`` (``CUDA_DEVICE_ORDER``), say which device a CUDA index means (:func:`cuda_order`;
    without them NVML's order is taken). Like CUDA: unset means all, entries are indices or (prefixes of) UUIDs,
    parsing stops at the first entry that names no device, and duplicates end the list.
    """
    if env is None:
        return list(range(len(uuids)))
    by_cuda_index = cuda_order(capabilities or [None] * len(uuids), bus_ids or [None] * len(uuids), order)
    chosen: list[int] = []
    for entry in (part.strip() for part in env.split(",")):
        index = _resolve_device(entry, uuids, by_cuda_index)
        if index is None or index in chosen:
            break
        chosen.append(index)
    return chosen


def _resolve_device(entry: str, uuids: Sequence[str], by_cuda_index: Sequence[int]) -> int | None:
    if entry.isdigit():
        index = int(entry)
        return by_cuda_index[index] if index < len(by_cuda_index) else None
    if not entry:
        return None
    token = entry if entry.startswith(("GPU-", "MIG-")) else f"GPU-{entry}"
    matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]
    return matches[0] if len(matches) == 1 else None


def capability(nvml: Nvml, handle: Any) -> tuple[int, int] | None:
    """A device's CUDA compute capability, ``(major, minor)``, or None."""
    value = nvml.query(nvml.lib.nvmlDeviceGetCudaComputeCapability, handle)
    return (int(value[0]), int(value[1])) if value is not None else None


def gpu_inventory(lib: Any = None) -> list[dict[str, Any]]:
    """Every GPU NVML lists: index, name, UUID, total memory (MiB), PCI bus id, driver and CUDA versions.

    ``visible`` says whether this process sees the device (``CUDA_VISIBLE_DEVICES``). Empty without GPUs.
    """
    nvml = Nvml.open(lib)
    if nvml is None:
        return []
    with nvml:
        driver, cuda = nvml.driver_version(), nvml.cuda_driver_version()
        gpus: list[dict[str, Any]] = []
        capabilities: list[tuple[int, int] | None] = []
        for index in range(nvml.device_count()):
            handle = nvml.handle(index)
            if handle is None:
                continue
            memory = nvml.query(nvml.lib.nvmlDeviceGetMemoryInfo, handle)
            pci = nvml.query(nvml.lib.nvmlDeviceGetPciInfo, handle)
            name, uuid = nvml.query(nvml.lib.nvmlDeviceGetName, handle), nvml.query(nvml.lib.nvmlDeviceGetUUID, handle)
            capabilities.append(capability(nvml, handle))
            gpus.append(
                {
                    "index": index,
                    "name": None if name is None else _text(name),
                    "uuid": None if uuid is None else _text(uuid),
                    "memory_total_mib": None if memory is None else round(memory.total / MIB, 1),
                    "pci_bus_id": None if pci is None else _text(pci.busId),
                    "driver_version": driver,
                    "cuda_driver_version": cuda,
                }
            )
    visible = set(visible_indices([g["uuid"] or "" for g in gpus], os.environ.get("CUDA_VISIBLE_DEVICES"),
                                  capabilities=capabilities, bus_ids=[g["pci_bus_id"] for g in gpus],
                                  order=os.environ.get("CUDA_DEVICE_ORDER")))
    for position, gpu in enumerate(gpus):
        gpu["visible"] = position in visible
    if not gpus:
        logger.info("NVML found no GPU; GPU fields are empty")
    return gpus

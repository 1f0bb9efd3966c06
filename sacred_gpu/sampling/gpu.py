"""The NVML device layer: the one entry point for every NVML call.

NVML comes from NVIDIA's official bindings (``nvidia-ml-py``, imported as ``pynvml``). Any module with the same
API can stand in for it (``sacred_gpu.testing.fake_nvml`` does, for tests and the demo). Failures degrade per field:
an unsupported field reads as ``None``; no library or no driver means no GPUs, said once at INFO.
"""

from __future__ import annotations

import logging
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


def capability(nvml: Nvml, handle: Any) -> tuple[int, int] | None:
    """A device's CUDA compute capability, ``(major, minor)``, or None."""
    value = nvml.query(nvml.lib.nvmlDeviceGetCudaComputeCapability, handle)
    return (int(value[0]), int(value[1])) if value is not None else None


def gpu_inventory(gpus: Any = None) -> list[dict[str, Any]]:
    """Every GPU NVML lists: index, name, UUID, total memory (MiB), PCI bus id, driver and CUDA versions, its MIG
    instances (``mig``: UUID, GPU- and compute-instance ids, memory), and ``visible``: whether it is one of the run's
    GPUs (``CUDA_VISIBLE_DEVICES``, resolved as CUDA does: :func:`~sacred_gpu.sampling.devices.select`).

    ``gpus``: the run's :class:`~sacred_gpu.sampling.devices.RunGpus` (its open session and its GPUs), or a
    pynvml-compatible module to open a session for this call (per this process's environment). Empty without GPUs.
    """
    from sacred_gpu.sampling.devices import RunGpus

    run = gpus if isinstance(gpus, RunGpus) else RunGpus.from_environment(gpus)
    if run.session is None:
        return []
    try:
        driver, cuda = run.session.driver_version(), run.session.cuda_driver_version()
    finally:
        if run is not gpus:
            run.close()
    found, chosen = run.devices, run.selected
    runs = {id(item.gpu): {id(mig) for mig in item.migs} for item in chosen}
    gpus = []
    for device in found:
        entry: dict[str, Any] = {"index": device.index, "name": device.name, "uuid": device.uuid or None,
                                 "memory_total_mib": device.memory_total_mib, "pci_bus_id": device.bus_id,
                                 "driver_version": driver, "cuda_driver_version": cuda,
                                 "visible": id(device) in runs}
        if device.handle is None:
            entry["note"] = "this process cannot open it (no permission): CUDA does not list it either"
        if device.mig:
            entry["mig"] = [{"uuid": mig.uuid or None, "gpu_instance_id": mig.gpu_instance_id,
                             "compute_instance_id": mig.compute_instance_id,
                             "memory_total_mib": mig.memory_total_mib,
                             "visible": id(mig) in runs.get(id(device), set())} for mig in device.mig]
        gpus.append(entry)
    if not gpus:
        logger.info("NVML found no GPU; GPU fields are empty")
    return gpus

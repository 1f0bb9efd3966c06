"""GPU metrics through NVML, per visible device (and MIG instance), in a fast and a slow tier.

Each field's support is probed per device at start; unsupported fields are dropped silently. A device that falls off
the bus is dropped with one WARNING while the others keep reporting. Names, tiers and units are those of
:mod:`sacred_gpu.schema.catalog`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from sacred_gpu.sampling.devices import Selected, cuda_environment, discover, select
from sacred_gpu.sampling.gpu import MIB, Nvml
from sacred_gpu.sampling.gpu_readers import (
    MIG_READERS,
    PCIE_COUNTERS,
    PCIE_THROUGHPUT,
    PROCESS_MEMORY,
    READERS,
    CounterRate,
    Reader,
    _mismatch,
    running_processes,
)
from sacred_gpu.schema import catalog

logger = logging.getLogger(__name__)


@dataclass
class _Device:
    """A GPU or MIG instance being sampled: its name prefix and the readers it supports, per tier."""

    prefix: str  # "sys/gpu0/" or "sys/gpu0/mig1/"
    handle: Any
    fields: dict[str, list[tuple[str, Reader]]] = field(default_factory=lambda: {"fast": [], "slow": []})
    energy_base: float | None = None  # energy counter at start, J
    is_gpu: bool = True
    mig_enabled: bool = False  # a GPU in MIG mode: NVML hides its processes from non-root users


class GpuCollector:
    """Samples every visible GPU. ``lib``: a pynvml-compatible module; ``pids``: the process tree's PIDs."""

    name = "gpu"

    def __init__(self, lib: Any = None, pids: Callable[[], set[int]] | None = None, *, session: Nvml | None = None,
                 devices: list[Selected] | None = None) -> None:
        """``session``: the run's open NVML (kept open at :meth:`close`; default: one of its own, from ``lib``);
        ``devices``: the run's GPUs (default: :func:`~sacred_gpu.sampling.devices.select` at :meth:`start`)."""
        self._lib_arg = lib
        self._pids = pids or (lambda: {os.getpid()})
        self._session, self._selected = session, devices
        self._nvml: Nvml | None = None
        self.devices: list[_Device] = []
        self._said_namespace = False

    # -- setup ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Take NVML (the run's session, or open one), the run's devices, and probe which fields each supports."""
        self._nvml = self._session or Nvml.open(self._lib_arg)
        if self._nvml is None:
            return  # Nvml.open said why, once, at INFO
        selected = self._selected
        if selected is None:
            selected = select(discover(self._nvml), *cuda_environment())
        for chosen in selected:
            prefix = f"sys/gpu{chosen.gpu.index}/"
            gpu = _Device(prefix, chosen.gpu.handle, mig_enabled=bool(chosen.gpu.mig))
            self.devices.append(self._probe(gpu, catalog.gpu_specs(), READERS))
            for mig in chosen.migs:
                self.devices.append(self._probe(_Device(f"{prefix}mig{mig.number}/", mig.handle, is_gpu=False),
                                                catalog.mig_specs(), MIG_READERS))
        if not self.devices:
            logger.info("No visible GPU (CUDA_VISIBLE_DEVICES=%r): host metrics only",
                        os.environ.get("CUDA_VISIBLE_DEVICES"))

    def _probe(self, device: _Device, specs: list[catalog.MetricSpec], readers: dict[str, Reader]) -> _Device:
        """Keep, in its catalog tier, each field of ``specs`` the device answers (this runs on the sampler thread)."""
        lib = self._nvml.lib  # type: ignore[union-attr]
        for spec in specs:
            reader: Reader | None = readers.get(spec.field)
            if spec.field == PROCESS_MEMORY and device.is_gpu:
                reader = lambda lib, h, mig=device.mig_enabled: self._process_memory(h, mig)  # noqa: E731
            elif spec.field in PCIE_COUNTERS and device.is_gpu:
                reader = CounterRate(PCIE_COUNTERS[spec.field])
            if reader is None:
                continue
            try:
                value = reader(lib, device.handle)
            except Exception:  # noqa: BLE001 - any failure of the binding (e.g. NVMLLibraryMismatchError on a
                if spec.field in PCIE_THROUGHPUT and device.is_gpu:  # driver without the _v3 calls): left out,
                    device.fields[spec.tier].append((spec.field, PCIE_THROUGHPUT[spec.field]))  # but PCIe: the
                continue  # blocking older call, never probed (dropped at its first NotSupported)
            if spec.field == "energy_j":
                device.energy_base = value
            device.fields[spec.tier].append((spec.field, reader))
        return device

    def _process_memory(self, handle: Any, mig_enabled: bool = False) -> float | None:
        """GPU memory of the training process tree on this device, MiB; None where it cannot be known: NVML cannot
        say how much one of its processes uses (``usedGpuMemory`` not available), or it lists processes this one
        cannot see (a container's PID namespace: NVML reports host PIDs; said once at INFO)."""
        lib, ours = self._nvml.lib, self._pids()  # type: ignore[union-attr]
        processes = running_processes(lib, handle)
        used = {p.pid: p.usedGpuMemory for p in processes if p.pid in ours}
        if None in used.values() or (mig_enabled and not processes):  # a MIG parent lists none to non-root users
            return None
        if not used and any(not psutil.pid_exists(p.pid) for p in processes):
            if not self._said_namespace:
                self._said_namespace = True
                logger.info("GPU memory of the run's processes left out: NVML lists processes this process cannot "
                            "see (a container without the host's PID namespace reports host PIDs; run it with "
                            "--pid=host to have it)")
            return None
        return sum(used.values()) / MIB

    # -- sampling -------------------------------------------------------------------------------------------------
    def sample(self, slow: bool) -> dict[str, float]:
        """One reading of every supported field of the tier(s) due, from every device still present."""
        if self._nvml is None:
            return {}
        lib = self._nvml.lib
        values: dict[str, float] = {}
        for device in list(self.devices):
            tiers = (device.fields["fast"], device.fields["slow"]) if slow else (device.fields["fast"],)
            for fields in tiers:
                for name, reader in list(fields):
                    try:
                        reading = reader(lib, device.handle)
                    except lib.NVMLError_GpuIsLost:
                        self._drop(device)
                        break
                    except (lib.NVMLError_NotSupported, lib.NVMLError_FunctionNotFound, _mismatch(lib)):
                        fields.remove((name, reader))  # this device or driver cannot give it: stop asking
                        continue
                    except Exception as exc:  # noqa: BLE001 - this field, this time
                        logger.debug("NVML %s%s failed: %s", device.prefix, name, exc)
                        continue
                    if reading is None:  # unknown stays unknown, never 0
                        continue
                    value = float(reading)
                    if name == "energy_j" and device.energy_base is not None:
                        value -= device.energy_base
                    values[device.prefix + name] = value
                if device not in self.devices:
                    break
        return values

    def _drop(self, device: _Device) -> None:
        """A GPU fell off the bus: stop reading it (and its MIG instances), say so once."""
        gpu_prefix = device.prefix.split("mig")[0]
        self.devices = [d for d in self.devices if not d.prefix.startswith(gpu_prefix)]
        logger.warning("%s was lost (NVML: GPU is lost); its metrics stop, the other GPUs keep reporting",
                       gpu_prefix.removeprefix("sys/").rstrip("/"))

    def close(self) -> None:
        if self._nvml is not None and self._nvml is not self._session:  # the run's session is the run's to close
            self._nvml.close()
        self._nvml = None

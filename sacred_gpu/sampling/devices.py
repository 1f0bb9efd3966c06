"""Which GPUs (and MIG instances) are the run's, resolved as CUDA resolves ``CUDA_VISIBLE_DEVICES``.

:func:`discover` lists every device NVML knows once per run (its handle, UUID, PCI bus id, compute capability, its
MIG instances with their GPU-instance ids); :func:`select` picks the run's: indices count in CUDA's order
(``CUDA_DEVICE_ORDER``: FASTEST_FIRST, CUDA's default, or PCI_BUS_ID) over the devices this process can open (CUDA
does not list the others either); UUIDs name GPUs (``GPU-...``, or a prefix) and MIG instances in both forms
(``MIG-<uuid>``, and the older ``MIG-GPU-<gpu uuid>/<gpu instance>/<compute instance>``). The inventory and the
sampler both follow :func:`select`, so they agree on which GPUs are the run's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sacred_gpu.sampling.gpu import MIB, Nvml, _text, capability


@dataclass
class MigDevice:
    """A MIG instance: its handle, UUID and GPU/compute-instance ids (as nvidia-smi shows them)."""

    handle: Any
    uuid: str
    gpu_instance_id: int | None
    compute_instance_id: int | None
    position: int  #: its index among the GPU's MIG devices (NVML's ``nvmlDeviceGetMigDeviceHandleByIndex``)
    memory_total_mib: float | None = None

    @property
    def number(self) -> int:
        """The ``j`` of its metric names (``sys/gpu{i}/mig{j}/...``): its GPU-instance id, as nvidia-smi and DCGM
        name it (the position where the driver does not say)."""
        return self.gpu_instance_id if self.gpu_instance_id is not None else self.position


@dataclass
class GpuDevice:
    """A GPU NVML lists; ``handle`` is None where this process cannot open it (CUDA does not list it either)."""

    index: int  #: NVML's index (PCI order)
    handle: Any
    uuid: str = ""
    name: str | None = None
    bus_id: str | None = None
    capability: tuple[int, int] | None = None
    memory_total_mib: float | None = None
    mig: list[MigDevice] = field(default_factory=list)


@dataclass
class Selected:
    """One of the run's GPUs: the whole GPU (``mig`` None: every MIG instance it has), or some of its MIG
    instances."""

    gpu: GpuDevice
    mig: list[MigDevice] | None = None

    @property
    def migs(self) -> list[MigDevice]:
        return self.gpu.mig if self.mig is None else self.mig


def discover(nvml: Nvml) -> list[GpuDevice]:
    """Every GPU NVML lists, with what :func:`select` and the inventory need (one pass, at the run's start)."""
    lib, devices = nvml.lib, []
    for index in range(nvml.device_count()):
        handle = nvml.handle(index)
        device = GpuDevice(index, handle)
        if handle is not None:
            uuid, name = nvml.query(lib.nvmlDeviceGetUUID, handle), nvml.query(lib.nvmlDeviceGetName, handle)
            pci, memory = nvml.query(lib.nvmlDeviceGetPciInfo, handle), nvml.query(lib.nvmlDeviceGetMemoryInfo, handle)
            device.uuid = "" if uuid is None else _text(uuid)
            device.name = None if name is None else _text(name)
            device.bus_id = None if pci is None else _text(pci.busId)
            device.capability = capability(nvml, handle)
            device.memory_total_mib = None if memory is None else round(memory.total / MIB, 1)
            device.mig = _mig_devices(nvml, handle)
        devices.append(device)
    return devices


def _mig_devices(nvml: Nvml, handle: Any) -> list[MigDevice]:
    lib = nvml.lib
    mode = nvml.query(lib.nvmlDeviceGetMigMode, handle)
    if not mode or mode[0] != getattr(lib, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    found = []
    for position in range(nvml.query(lib.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
        mig = nvml.query(lib.nvmlDeviceGetMigDeviceHandleByIndex, handle, position)
        if mig is None:
            continue
        uuid, memory = nvml.query(lib.nvmlDeviceGetUUID, mig), nvml.query(lib.nvmlDeviceGetMemoryInfo, mig)
        found.append(MigDevice(mig, "" if uuid is None else _text(uuid),
                               nvml.query(lib.nvmlDeviceGetGpuInstanceId, mig),
                               nvml.query(lib.nvmlDeviceGetComputeInstanceId, mig), position,
                               None if memory is None else round(memory.total / MIB, 1)))
    return found


def cuda_order(capabilities: Sequence[tuple[int, int] | None], bus_ids: Sequence[str | None],
               order: str | None) -> list[int]:
    """Positions in CUDA's device order, which ``CUDA_VISIBLE_DEVICES`` indices count in (``order``: the value of
    ``CUDA_DEVICE_ORDER``). ``PCI_BUS_ID``: by PCI bus id. ``FASTEST_FIRST`` (CUDA's default): the highest compute
    capability first, PCI bus order among equals. NVML's own index "may not correlate with the CUDA device index"
    (NVML's documentation): on a machine with mixed GPUs the two differ."""
    def bus(position: int) -> tuple[str, int]:
        return (bus_ids[position] or "").lower(), position

    positions = sorted(range(len(capabilities)), key=bus)
    if (order or "").strip().upper() == "PCI_BUS_ID":
        return positions
    return sorted(positions, key=lambda position: tuple(-part for part in (capabilities[position] or (0, 0))))


def select(devices: Sequence[GpuDevice], env: str | None, order: str | None = None) -> list[Selected]:
    """The run's GPUs per ``CUDA_VISIBLE_DEVICES`` (``env``) and ``CUDA_DEVICE_ORDER`` (``order``), as CUDA resolves
    them: unset means every device this process can open; entries are CUDA indices or (prefixes of) UUIDs, GPU or
    MIG; parsing stops at the first entry that names no device, and a repeated device ends the list."""
    usable = [device for device in devices if device.handle is not None]
    if env is None:
        return [Selected(device) for device in usable]
    by_cuda_index = [usable[position] for position in cuda_order([d.capability for d in usable],
                                                                 [d.bus_id for d in usable], order)]
    chosen: list[Selected] = []
    seen: set[int] = set()  # the devices named so far (a repeated one ends the list)
    for entry in (part.strip() for part in env.split(",")):
        found = _resolve(entry, usable, by_cuda_index)
        if found is None or id(found[1] or found[0]) in seen:
            break
        gpu, mig = found
        seen.add(id(mig or gpu))
        same = next((s for s in chosen if s.gpu is gpu), None)
        if mig is None:
            chosen.append(Selected(gpu))
        elif same is not None and same.mig is not None:
            same.mig.append(mig)
        else:
            chosen.append(Selected(gpu, [mig]))
    return chosen


def _resolve(entry: str, usable: Sequence[GpuDevice],
             by_cuda_index: Sequence[GpuDevice]) -> tuple[GpuDevice, MigDevice | None] | None:
    """The device one ``CUDA_VISIBLE_DEVICES`` entry names, or None."""
    if entry.isdigit():
        index = int(entry)
        return (by_cuda_index[index], None) if index < len(by_cuda_index) else None
    if not entry:
        return None
    if entry.startswith("MIG-GPU-"):  # MIG-GPU-<gpu uuid>/<gpu instance>/<compute instance> (drivers before R470)
        parts = entry.removeprefix("MIG-").split("/")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        gpus = [device for device in usable if device.uuid == parts[0]]
        migs = [(gpus[0], mig) for mig in (gpus[0].mig if gpus else [])
                if (mig.gpu_instance_id, mig.compute_instance_id) == (int(parts[1]), int(parts[2]))]
        return migs[0] if len(migs) == 1 else None
    if entry.startswith("MIG-"):
        migs = [(device, mig) for device in usable for mig in device.mig if mig.uuid.startswith(entry)]
        return migs[0] if len(migs) == 1 else None
    token = entry if entry.startswith("GPU-") else f"GPU-{entry}"
    gpus = [device for device in usable if device.uuid.startswith(token)]
    return (gpus[0], None) if len(gpus) == 1 else None


def cuda_environment() -> tuple[str | None, str | None]:
    """This process's ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER`` (None where unset)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUDA_DEVICE_ORDER")


def visible_indices(uuids: Sequence[str], env: str | None, *,
                    capabilities: Sequence[tuple[int, int] | None] | None = None,
                    bus_ids: Sequence[str | None] | None = None, order: str | None = None) -> list[int]:
    """:func:`select` on devices given by their UUIDs (and compute capabilities and PCI bus ids, in NVML order):
    the NVML indices of the GPUs a CUDA process sees."""
    devices = [GpuDevice(index, index, uuid, capability=(capabilities or [None] * len(uuids))[index],
                         bus_id=(bus_ids or [None] * len(uuids))[index]) for index, uuid in enumerate(uuids)]
    return [chosen.gpu.index for chosen in select(devices, env, order)]


@dataclass
class RunGpus:
    """A run's one NVML session (opened at its start, closed at its end: without persistence mode the driver may
    re-initialise the GPUs at every new session), every device it found, and the run's."""

    session: Nvml | None = None
    devices: list[GpuDevice] = field(default_factory=list)
    selected: list[Selected] = field(default_factory=list)

    @classmethod
    def open(cls, lib: Any = None, env: str | None = None, order: str | None = None) -> RunGpus:
        """Open NVML (``lib``: a pynvml-compatible module, default ``pynvml``) and find the run's GPUs per ``env``
        (``CUDA_VISIBLE_DEVICES``) and ``order`` (``CUDA_DEVICE_ORDER``); no session where NVML cannot start."""
        session = Nvml.open(lib)
        if session is None:
            return cls()
        devices = discover(session)
        return cls(session, devices, select(devices, env, order))

    @classmethod
    def from_environment(cls, lib: Any = None) -> RunGpus:
        """:meth:`open` with this process's ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER``."""
        return cls.open(lib, *cuda_environment())

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

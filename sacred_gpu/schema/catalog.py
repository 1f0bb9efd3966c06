"""Every system metric sacred-gpu samples, and everything the house knows of it: one row each.

A row (:class:`MetricSpec`) gives a metric's name (units in the name), unit, tier, how a heartbeat window sums it
up, its source and meaning, how it rolls up into the run's ``system`` summary, and the panel that draws it. The
collectors, the windows, the run roll-ups, the board's panels and the README table are all driven by these rows:
adding a GPU field is one row here plus its NVML reader (``sacred_gpu.sampling.gpu_readers.READERS``).

Names are ``sys/<device>/<field>_<unit>``; ``{i}`` is the GPU's NVML index, ``{j}`` a MIG instance. No name has a
``.`` or a leading ``$``. README's tables are generated from :data:`CATALOG` (:mod:`.catalog_tables`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Tier = Literal["fast", "slow"]
#: How the samples of one heartbeat window become one point: mean, max, last value, or bitwise OR (bit masks).
Window = Literal["mean", "max", "last", "or"]
#: How every sample of a run becomes one number of its ``system`` summary.
Summary = Literal["mean", "max", "last"]
#: How the per-GPU summaries of one field become one number for the run (``gpu_<summary name>``).
Total = Literal["mean", "max", "sum"]

PREFIX = "sys/"
#: The template part naming a GPU; the rest of a GPU row's name is the field.
GPU_TEMPLATE = "sys/gpu{i}/"
MIG_TEMPLATE = "sys/gpu{i}/mig{j}/"


@dataclass(frozen=True)
class MetricSpec:
    """One system metric."""

    name: str  #: e.g. ``sys/gpu{i}/util_pct``
    unit: str
    tier: Tier
    window: Window
    source: str
    description: str
    #: the key of the panel (:data:`PANELS`) drawing it, if any, and its legend label there (``{device}`` stands for
    #: ``gpu0`` or ``gpu0/mig1``; default: the device for GPU rows, the name without ``sys/`` for others)
    panel: str | None = None
    label: str | None = None
    #: a limit or a size drawn beside the series it bounds (dashed), not a reading of its own
    reference: bool = False
    #: its field in the run's ``system`` summary (per GPU for a GPU row), how it is computed and scaled (``scale``
    #: times the summed-up value), and how the GPUs' values are totalled into ``gpu_<summary>``
    summary: str | None = None
    summarize: Summary | None = None
    scale: float = 1.0
    total: Total | None = None
    #: how the summary is titled on a run's page, and its unit where ``scale`` changes it
    title: str | None = None
    summary_unit: str | None = None
    #: the Prometheus gauge it is exposed as (base units, :data:`PROMETHEUS_SCALE`), and DCGM exporter's field
    #: for the same reading, where DCGM has one (README's mapping table)
    prometheus: str | None = None
    dcgm: str | None = None

    @property
    def field(self) -> str:
        """The name without its device part: ``util_pct`` for ``sys/gpu{i}/util_pct``, ``cpu/util_pct`` for a host
        row."""
        for template in (MIG_TEMPLATE, GPU_TEMPLATE, PREFIX):
            if self.name.startswith(template):
                return self.name.removeprefix(template)
        return self.name


#: The factor from a row's unit to the base unit its Prometheus name says (``_ratio``, ``_bytes``, ``_hertz``, ...).
PROMETHEUS_SCALE: dict[str, float] = {
    "%": 0.01, "% of a core": 0.01, "MiB": 2.0**20, "GiB": 2.0**30, "MiB/s": 2.0**20, "MHz": 1e6, "W": 1.0, "J": 1.0,
    "°C": 1.0, "bitmask": 1.0, "errors": 1.0, "threads": 1.0, "processes": 1.0,
}


@dataclass(frozen=True)
class PanelSpec:
    """A system panel of the board: its key, title, unit, the group it is shown in, and how it is drawn (``lines``:
    a line per series; ``bits``: a bit mask drawn as a timeline of the bits set, named by :data:`THROTTLE_BITS`)."""

    key: str
    title: str
    unit: str
    group: str = "GPU"
    kind: Literal["lines", "bits"] = "lines"


#: The board's system panels, in the order they are shown.
PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("gpu-util", "GPU utilization", "%"),
    PanelSpec("gpu-mem", "GPU memory used (dashed: total)", "MiB"),
    PanelSpec("gpu-mem-util", "GPU memory activity", "%"),
    PanelSpec("gpu-power", "GPU power (dashed: limit)", "W"),
    PanelSpec("gpu-temp", "GPU temperature", "°C"),
    PanelSpec("gpu-clocks", "GPU clocks", "MHz"),
    PanelSpec("gpu-throttle", "GPU throttle reasons", "", kind="bits"),
    PanelSpec("gpu-pcie", "PCIe throughput", "MiB/s"),
    PanelSpec("gpu-ecc", "ECC errors since the driver loaded", "errors"),
    PanelSpec("gpu-fan", "GPU fan", "%"),
    PanelSpec("gpu-energy", "GPU energy since the start", "J"),
    PanelSpec("gpu-proc-mem", "GPU memory of the run's processes", "MiB", group="Run's processes"),
    PanelSpec("proc-cpu", "CPU of the run's processes", "% of a core", group="Run's processes"),
    PanelSpec("proc-rss", "RAM of the run's processes (RSS)", "MiB", group="Run's processes"),
    PanelSpec("proc-count", "Processes and threads", "count", group="Run's processes"),
    PanelSpec("cpu", "Host CPU (all cores)", "%", group="Host"),
    PanelSpec("ram", "Host RAM", "MiB", group="Host"),
    PanelSpec("ram-pct", "Host RAM used (% of the limit)", "%", group="Host"),
    PanelSpec("disk", "Disk I/O", "MiB/s", group="Host"),
    PanelSpec("net", "Network", "MiB/s", group="Host"),
    PanelSpec("workdir", "Working directory's disk", "GiB free", group="Host"),
    PanelSpec("workdir-pct", "Working directory's disk used", "%", group="Host"),
)
#: NVML's clocks-event (throttle) reason bits, as ``nvmlClocksEventReason*`` names them.
THROTTLE_BITS: dict[int, str] = {
    0x1: "GPU idle", 0x2: "applications clocks setting", 0x4: "software power cap", 0x8: "hardware slowdown",
    0x10: "sync boost", 0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown",
    0x80: "hardware power brake", 0x100: "display clock setting",
}


def _gpu(field: str, unit: str, tier: Tier, window: Window, source: str, description: str,
         **drawn_and_summed: object) -> MetricSpec:
    return MetricSpec(f"{GPU_TEMPLATE}{field}", unit, tier, window, source, description,
                      **drawn_and_summed)  # type: ignore[arg-type]


CATALOG: tuple[MetricSpec, ...] = (
    _gpu("util_pct", "%", "fast", "mean", "nvmlDeviceGetUtilizationRates().gpu", "time a kernel was running",
         panel="gpu-util", summary="util_mean_pct", summarize="mean", total="mean", title="GPU utilization",
         prometheus="sacred_gpu_utilization_ratio", dcgm="DCGM_FI_DEV_GPU_UTIL"),
    _gpu("mem_util_pct", "%", "fast", "mean", "nvmlDeviceGetUtilizationRates().memory",
         "time device memory was being read or written (not how much of its bandwidth)", panel="gpu-mem-util",
         prometheus="sacred_gpu_memory_activity_ratio", dcgm="DCGM_FI_DEV_MEM_COPY_UTIL"),
    _gpu("mem_used_mib", "MiB", "fast", "max", "nvmlDeviceGetMemoryInfo(v2).used", "memory used, all processes",
         panel="gpu-mem", summary="mem_peak_mib", summarize="max", total="max", title="GPU memory used",
         prometheus="sacred_gpu_memory_used_bytes", dcgm="DCGM_FI_DEV_FB_USED"),
    _gpu("power_w", "W", "fast", "mean", "nvmlDeviceGetPowerUsage", "power draw", panel="gpu-power",
         summary="power_mean_w", summarize="mean", total="sum", title="GPU power",
         prometheus="sacred_gpu_power_watts", dcgm="DCGM_FI_DEV_POWER_USAGE"),
    _gpu("energy_j", "J", "fast", "last", "nvmlDeviceGetTotalEnergyConsumption", "energy used since the run started",
         panel="gpu-energy", summary="energy_wh", summarize="last", scale=1 / 3600, total="sum", title="GPU energy",
         summary_unit="Wh",
         prometheus="sacred_gpu_energy_joules", dcgm="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
    _gpu("sm_clock_mhz", "MHz", "fast", "mean", "nvmlDeviceGetClockInfo(SM)", "streaming multiprocessor clock",
         panel="gpu-clocks", label="{device} SM",
         prometheus="sacred_gpu_sm_clock_hertz", dcgm="DCGM_FI_DEV_SM_CLOCK"),
    _gpu("mem_clock_mhz", "MHz", "fast", "mean", "nvmlDeviceGetClockInfo(MEM)", "memory clock", panel="gpu-clocks",
         label="{device} memory",
         prometheus="sacred_gpu_memory_clock_hertz", dcgm="DCGM_FI_DEV_MEM_CLOCK"),
    _gpu("throttle_reasons", "bitmask", "fast", "or", "nvmlDeviceGetCurrentClocksEventReasons",
         "why clocks were lowered (NVML clocks-event bits, OR over the window)", panel="gpu-throttle",
         prometheus="sacred_gpu_throttle_reasons", dcgm="DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"),
    _gpu("fan_pct", "%", "fast", "mean", "nvmlDeviceGetFanSpeed", "fan speed (absent on passively cooled GPUs)",
         panel="gpu-fan",
         prometheus="sacred_gpu_fan_speed_ratio", dcgm="DCGM_FI_DEV_FAN_SPEED"),
    _gpu("mem_total_mib", "MiB", "slow", "last", "nvmlDeviceGetMemoryInfo(v2).total", "memory size",
         panel="gpu-mem", label="{device} total", reference=True,
         prometheus="sacred_gpu_memory_total_bytes"),
    _gpu("power_limit_w", "W", "slow", "last", "nvmlDeviceGetEnforcedPowerLimit", "enforced power limit",
         panel="gpu-power", label="{device} limit", reference=True,
         prometheus="sacred_gpu_power_limit_watts", dcgm="DCGM_FI_DEV_POWER_MGMT_LIMIT"),
    _gpu("temp_c", "°C", "slow", "max", "nvmlDeviceGetTemperatureV(GPU)", "GPU die temperature", panel="gpu-temp",
         summary="temp_max_c", summarize="max", title="GPU temperature",
         prometheus="sacred_gpu_temperature_celsius", dcgm="DCGM_FI_DEV_GPU_TEMP"),
    _gpu("pcie_tx_mib_s", "MiB/s", "slow", "mean", "nvmlDeviceGetFieldValues(PCIE_COUNT_TX_BYTES)",
         "PCIe sent by the GPU, between two slow samples (older drivers: a 20 ms nvmlDeviceGetPcieThroughput)",
         panel="gpu-pcie", label="{device} sent",
         prometheus="sacred_gpu_pcie_transmit_bytes_per_second", dcgm="DCGM_FI_PROF_PCIE_TX_BYTES"),
    _gpu("pcie_rx_mib_s", "MiB/s", "slow", "mean", "nvmlDeviceGetFieldValues(PCIE_COUNT_RX_BYTES)",
         "PCIe received by the GPU, between two slow samples (older drivers: a 20 ms nvmlDeviceGetPcieThroughput)",
         panel="gpu-pcie", label="{device} received",
         prometheus="sacred_gpu_pcie_receive_bytes_per_second", dcgm="DCGM_FI_PROF_PCIE_RX_BYTES"),
    _gpu("ecc_corrected", "errors", "slow", "last", "nvmlDeviceGetTotalEccErrors(CORRECTED, VOLATILE)",
         "corrected ECC errors since the driver loaded", panel="gpu-ecc", label="{device} corrected",
         prometheus="sacred_gpu_ecc_corrected_errors", dcgm="DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),
    _gpu("ecc_uncorrected", "errors", "slow", "last", "nvmlDeviceGetTotalEccErrors(UNCORRECTED, VOLATILE)",
         "uncorrected ECC errors since the driver loaded", panel="gpu-ecc", label="{device} uncorrected",
         prometheus="sacred_gpu_ecc_uncorrected_errors", dcgm="DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),
    _gpu("proc_mem_mib", "MiB", "slow", "max", "nvmlDeviceGet{Compute,Graphics}RunningProcesses",
         "memory used by the training process and its children (DataLoader workers)", panel="gpu-proc-mem",
         summary="proc_mem_peak_mib", summarize="max", title="GPU memory of the run's processes",
         prometheus="sacred_gpu_process_memory_used_bytes"),
    MetricSpec("sys/gpu{i}/mig{j}/mem_used_mib", "MiB", "fast", "max", "nvmlDeviceGetMemoryInfo(MIG device)",
               "memory used in a MIG instance", panel="gpu-mem",
               prometheus="sacred_gpu_mig_memory_used_bytes", dcgm="DCGM_FI_DEV_FB_USED"),
    MetricSpec("sys/gpu{i}/mig{j}/mem_total_mib", "MiB", "slow", "last", "nvmlDeviceGetMemoryInfo(MIG device)",
               "memory size of a MIG instance", panel="gpu-mem", label="{device} total", reference=True,
               prometheus="sacred_gpu_mig_memory_total_bytes"),
    MetricSpec("sys/cpu/util_pct", "%", "fast", "mean", "psutil.cpu_percent", "system CPU utilization, all cores",
               panel="cpu", summary="cpu_util_mean_pct", summarize="mean", title="host CPU, all cores",
               prometheus="sacred_host_cpu_utilization_ratio"),
    MetricSpec("sys/proc/cpu_pct", "% of a core", "fast", "mean", "psutil.Process.cpu_percent",
               "CPU used by the training process and its children", panel="proc-cpu", summary="proc_cpu_mean_pct",
               summarize="mean", title="CPU of the run's processes",
               prometheus="sacred_process_cpu_cores"),
    MetricSpec("sys/proc/rss_mib", "MiB", "fast", "max", "psutil.Process.memory_info().rss",
               "resident memory of the training process and its children", panel="proc-rss",
               label="RSS", summary="proc_rss_peak_mib", summarize="max", title="RAM of the run's processes (RSS)",
               prometheus="sacred_process_resident_memory_bytes"),
    MetricSpec("sys/proc/threads", "threads", "fast", "max", "psutil.Process.num_threads",
               "threads of the training process and its children", panel="proc-count", label="threads",
               prometheus="sacred_process_threads"),
    MetricSpec("sys/proc/count", "processes", "fast", "max", "psutil.Process.children",
               "the training process and its children", panel="proc-count", label="processes",
               prometheus="sacred_process_count"),
    MetricSpec("sys/mem/used_mib", "MiB", "fast", "max", "psutil.virtual_memory / cgroup memory.current",
               "RAM used (the container's, where a cgroup limit applies)", panel="ram", label="host used",
               summary="mem_used_peak_mib", summarize="max", title="host RAM used",
               prometheus="sacred_host_memory_used_bytes"),
    MetricSpec("sys/mem/available_mib", "MiB", "fast", "mean", "psutil.virtual_memory / cgroup memory.max",
               "RAM available (to the container, where a cgroup limit applies)", panel="ram", label="available",
               prometheus="sacred_host_memory_available_bytes"),
    MetricSpec("sys/mem/used_pct", "%", "fast", "max", "psutil.virtual_memory / cgroup", "RAM used, % of the limit",
               panel="ram-pct", label="used",
               prometheus="sacred_host_memory_used_ratio"),
    MetricSpec("sys/swap/used_mib", "MiB", "fast", "max", "psutil.swap_memory", "swap used", panel="ram",
               label="swap used",
               prometheus="sacred_host_swap_used_bytes"),
    MetricSpec("sys/disk/read_mib_s", "MiB/s", "fast", "mean", "psutil.disk_io_counters", "disk reads, all disks",
               panel="disk", label="read",
               prometheus="sacred_host_disk_read_bytes_per_second"),
    MetricSpec("sys/disk/write_mib_s", "MiB/s", "fast", "mean", "psutil.disk_io_counters", "disk writes, all disks",
               panel="disk", label="write",
               prometheus="sacred_host_disk_write_bytes_per_second"),
    MetricSpec("sys/net/rx_mib_s", "MiB/s", "fast", "mean", "psutil.net_io_counters", "network received",
               panel="net", label="rx",
               prometheus="sacred_host_network_receive_bytes_per_second"),
    MetricSpec("sys/net/tx_mib_s", "MiB/s", "fast", "mean", "psutil.net_io_counters", "network sent", panel="net",
               label="tx",
               prometheus="sacred_host_network_transmit_bytes_per_second"),
    MetricSpec("sys/disk/workdir_used_pct", "%", "slow", "last", "psutil.disk_usage(cwd)",
               "disk usage of the working directory's file system", panel="workdir-pct", label="used",
               prometheus="sacred_host_workdir_disk_used_ratio"),
    MetricSpec("sys/disk/workdir_free_gib", "GiB", "slow", "last", "psutil.disk_usage(cwd)",
               "free space on the working directory's file system", panel="workdir", label="free",
               prometheus="sacred_host_workdir_disk_free_bytes"),
)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(\d+)").replace(r"\{j\}", r"(\d+)") + "$")


_index: tuple[tuple[MetricSpec, ...], list[tuple[re.Pattern[str], MetricSpec]], dict[str, tuple]] | None = None


def match(name: str) -> tuple[MetricSpec, tuple[int, ...]] | None:
    """The row a concrete metric name belongs to, with its GPU (and MIG) indices: ``sys/gpu1/util_pct`` ->
    (the ``util_pct`` row, (1,)); ``None`` for a name of no row. Follows :data:`CATALOG` as it is now."""
    global _index
    if _index is None or _index[0] is not CATALOG:
        _index = (CATALOG, [(_pattern(spec.name), spec) for spec in CATALOG], {})
    _, patterns, found = _index
    if name not in found:
        found[name] = next(((spec, tuple(int(i) for i in hit.groups())) for pattern, spec in patterns
                            if (hit := pattern.match(name))), None)
    return found[name]


def spec_for(name: str) -> MetricSpec | None:
    """The catalog row a concrete metric name (``sys/gpu1/util_pct``) belongs to, or ``None``."""
    hit = match(name)
    return hit[0] if hit else None


def gpu_specs() -> list[MetricSpec]:
    """The rows of whole GPUs (``sys/gpu{i}/<field>``), in catalog order."""
    return [spec for spec in CATALOG if spec.name.startswith(GPU_TEMPLATE) and "{j}" not in spec.name]


def mig_specs() -> list[MetricSpec]:
    """The rows of MIG instances (``sys/gpu{i}/mig{j}/<field>``), in catalog order."""
    return [spec for spec in CATALOG if spec.name.startswith(MIG_TEMPLATE)]


def legend_label(name: str, spec: MetricSpec) -> str:
    """How a concrete series is labelled in its panel: the row's label, else its device (``gpu0``, ``gpu0/mig1``)
    for a GPU row, else the name without ``sys/``."""
    if spec.label:
        device = name.removeprefix(PREFIX).removesuffix("/" + spec.field)
        return spec.label.format(device=device) if "{device}" in spec.label else spec.label
    if spec.name.startswith(GPU_TEMPLATE):
        return name.removeprefix(PREFIX).removesuffix("/" + spec.field)
    return name.removeprefix(PREFIX)

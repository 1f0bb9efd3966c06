"""The NVML device layer: visible devices, per-field degradation, and a library that is missing or failing."""

from __future__ import annotations

import logging
import os

import pynvml
import pytest

from sacred_gpu.sampling.devices import visible_indices
from sacred_gpu.sampling.gpu import Nvml, gpu_inventory
from sacred_gpu.sampling.gpu_collector import GpuCollector
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus

UUIDS = ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-cccc-3"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, [0, 1, 2]),
        ("", []),
        ("2,0", [2, 0]),
        ("GPU-bbbb-2", [1]),
        ("cccc,0", [2, 0]),  # UUID prefixes may omit "GPU-", as CUDA accepts
        ("0,7,1", [0]),  # CUDA stops at the first entry that names no device
        ("1,1,2", [1]),  # a repeated device ends the list too
        ("GPU-", []),  # ambiguous prefix
        ("-1", []),
    ],
)
def test_visible_indices_follow_cuda_rules(env, expected):
    assert visible_indices(UUIDS, env) == expected


def test_unsupported_field_reads_as_none_and_the_rest_is_kept(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = two_gpus()
    gpus[1].unsupported = {"nvmlDeviceGetPciInfo", "nvmlDeviceGetMemoryInfo"}
    inventory = gpu_inventory(FakeNvml(gpus))
    assert inventory[1]["pci_bus_id"] is None and inventory[1]["memory_total_mib"] is None
    assert inventory[1]["name"] == "NVIDIA A100-SXM4-40GB" and inventory[0]["memory_total_mib"] == 81920.0
    assert all(gpu["visible"] for gpu in inventory)


def test_lost_gpu_keeps_its_index_without_values():
    nvml = FakeNvml(two_gpus())
    nvml.lose(0)
    inventory = gpu_inventory(nvml)
    assert inventory[0]["name"] is None and inventory[0]["uuid"] is None
    assert inventory[1]["uuid"] == "GPU-22222222-aaaa-bbbb-cccc-000000000000"


def test_missing_library_means_no_gpus_said_once_at_info(caplog):
    caplog.set_level(logging.DEBUG, logger="sacred_gpu")
    assert Nvml.open(FakeNvml(missing=True)) is None
    assert [(r.levelno, "No NVIDIA GPU found" in r.getMessage()) for r in caplog.records] == [(logging.INFO, True)]


def test_real_pynvml_without_a_driver_is_handled():
    """On a machine without an NVIDIA driver the real bindings fail to initialise; we report no GPUs."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert gpu_inventory() == []
    else:  # a GPU machine: the real path must list every device
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        assert len(gpu_inventory()) == count


def test_cuda_version_is_formatted_major_minor():
    with Nvml.open(FakeNvml(two_gpus(), cuda_version=12020)) as nvml:
        assert nvml.cuda_driver_version() == "12.2" and nvml.driver_version() == "550.54.15"


# --- what real drivers do (issue 24) ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "level", "says"), [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, logging.INFO, "No NVIDIA GPU found"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, logging.INFO, "No NVIDIA GPU found"),
    (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, logging.WARNING, "reboot, or reload the nvidia kernel module"),
    (pynvml.NVML_ERROR_NO_PERMISSION, logging.WARNING, "no permission to open the GPU device files"),
    (pynvml.NVML_ERROR_UNKNOWN, logging.WARNING, "NVML could not start"),
])
def test_a_failed_nvml_start_says_what_is_wrong(code, level, says, caplog):
    caplog.set_level(logging.INFO, logger="sacred_gpu")
    assert Nvml.open(FakeNvml(two_gpus(), init_error=code)) is None
    [record] = [r for r in caplog.records if r.name.startswith("sacred_gpu")]
    assert record.levelno == level and says in record.getMessage()


def test_an_old_driver_without_the_v3_process_calls_and_the_new_throttle_name_keeps_every_other_metric(monkeypatch):
    """R470: pynvml's versioned wrappers raise NVMLLibraryMismatchError (no NVMLError): the ``_v2`` process calls
    give the process memory; the clocks-event name is missing (FUNCTION_NOT_FOUND) and its older name works."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = two_gpus()
    gpus[0].util_pct, gpus[0].clocks_event_reasons = 87, 4
    gpus[0].processes = [(os.getpid(), 512 * 1024 * 1024)]
    old = {"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
           "nvmlDeviceGetCurrentClocksEventReasons"}
    collector = GpuCollector(FakeNvml(gpus, old_driver=old))
    collector.start()
    try:
        sample = collector.sample(slow=True)
    finally:
        collector.close()
    assert sample["sys/gpu0/util_pct"] == 87 and sample["sys/gpu0/throttle_reasons"] == 4
    assert "sys/gpu1/util_pct" in sample and sample["sys/gpu0/proc_mem_mib"] == 512


def test_process_memory_nvml_cannot_give_is_left_out_not_zero(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = two_gpus()
    gpus[0].processes = [(os.getpid(), None)]  # usedGpuMemory not available (e.g. MIG parents, some containers)
    gpus[1].processes = [(os.getpid(), 256 * 1024 * 1024)]
    collector = GpuCollector(FakeNvml(gpus))
    collector.start()
    try:
        sample = collector.sample(slow=True)
    finally:
        collector.close()
    assert "sys/gpu0/proc_mem_mib" not in sample and sample["sys/gpu1/proc_mem_mib"] == 256.0


@pytest.mark.parametrize(("order", "sampled"), [(None, "NVIDIA H100 80GB HBM3"),
                                                ("FASTEST_FIRST", "NVIDIA H100 80GB HBM3"),
                                                ("PCI_BUS_ID", "NVIDIA A100-SXM4-40GB")])
def test_a_cuda_index_means_the_device_cuda_means_on_a_machine_with_mixed_gpus(monkeypatch, order, sampled):
    """NVML counts in PCI order; CUDA counts fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    a100, h100 = reversed(two_gpus())  # the slower card sits on the lower PCI bus: NVML index 0
    a100.pci_bus_id, h100.pci_bus_id = "00000000:17:00.0", "00000000:65:00.0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    if order is None:
        monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    else:
        monkeypatch.setenv("CUDA_DEVICE_ORDER", order)
    inventory = gpu_inventory(FakeNvml([a100, h100]))
    assert [gpu["name"] for gpu in inventory if gpu["visible"]] == [sampled]
    collector = GpuCollector(FakeNvml([a100, h100]))
    collector.start()
    try:
        [device] = collector.devices
    finally:
        collector.close()
    assert device.prefix == f"sys/gpu{[gpu['name'] for gpu in inventory].index(sampled)}/"

"""The run's GPUs, resolved as CUDA resolves them: MIG UUIDs in both forms, devices this process cannot open, and one
NVML session per run."""

from __future__ import annotations

import time

import pytest

from sacred_gpu import GpuMongoObserver
from sacred_gpu.sampling.devices import RunGpus, select
from sacred_gpu.testing.fake_nvml import FakeGpu, FakeNvml
from tests.support.experiments import run_experiment
from tests.support.gpu_sampling import sample_once


def mig_machine() -> list[FakeGpu]:
    """GPU 0 with MIG on (two instances, GPU-instance ids 3 and 9), GPU 1 without."""
    return [FakeGpu(uuid="GPU-aaaa-0000", pci_bus_id="00000000:17:00.0",
                    mig=[FakeGpu(uuid="MIG-1111-aaaa", gpu_instance_id=3, memory_used_bytes=1024**3),
                         FakeGpu(uuid="MIG-2222-bbbb", gpu_instance_id=9, memory_used_bytes=2 * 1024**3)]),
            FakeGpu(uuid="GPU-bbbb-0000", pci_bus_id="00000000:65:00.0")]


def sampled_names(nvml: FakeNvml, env: str) -> list[str]:
    return sorted(sample_once(nvml, env))


@pytest.mark.parametrize("env", ["MIG-2222-bbbb", "MIG-2222", "MIG-GPU-aaaa-0000/9/0"])
def test_a_mig_uuid_in_cuda_visible_devices_samples_that_instance(env):
    """Schedulers hand out MIG slices by UUID (``MIG-<uuid>``; before R470 ``MIG-GPU-<gpu uuid>/<gi>/<ci>``)."""
    names = sampled_names(FakeNvml(mig_machine()), env)
    assert "sys/gpu0/mig9/mem_used_mib" in names
    assert not any(name.startswith(("sys/gpu0/mig3/", "sys/gpu1/")) for name in names)


def test_mig_uuids_and_gpus_mixed_and_unknown_ones_stop_the_list_as_in_cuda():
    devices = RunGpus.open(FakeNvml(mig_machine())).devices
    chosen = select(devices, "MIG-1111-aaaa,1,MIG-GPU-aaaa-0000/9/0")
    assert [(item.gpu.index, [mig.number for mig in item.migs] if item.mig is not None else None)
            for item in chosen] == [(0, [3, 9]), (1, None)]
    assert select(devices, "MIG-ffff,0") == []  # names no device: CUDA stops there
    assert [item.gpu.index for item in select(devices, "MIG-GPU-aaaa-0000/4/0,1")] == []  # no instance 4


def test_a_gpu_this_process_cannot_open_is_not_counted_in_cuda_indices():
    """In a container given GPUs 1 and 2 of three, NVML lists all three but the first cannot be opened; CUDA's
    device 0 is then NVML's GPU 1."""
    gpus = [FakeGpu(uuid=f"GPU-{i}", pci_bus_id=f"00000000:{16 + i:02x}:00.0") for i in range(3)]
    gpus[0].no_permission = True
    nvml = FakeNvml(gpus)
    assert [item.gpu.index for item in RunGpus.open(nvml, "0").selected] == [1]
    assert [item.gpu.index for item in RunGpus.open(nvml, None).selected] == [1, 2]
    assert sampled_names(nvml, "1")[0].startswith("sys/gpu2/")


def test_one_nvml_session_per_run_for_the_inventory_and_the_sampler(client, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(mig_machine())
    watcher = GpuMongoObserver(client=client, nvml=nvml, sample_interval=0.02, slow_sample_interval=0.05)
    run_experiment(lambda: time.sleep(0.2), watcher)
    doc = client["sacred"].runs.find_one()
    assert nvml.init_calls == 1 and nvml.initialised == 0  # opened once, closed at the end
    assert "gpu0/mig9/mem_used_mib" in client["sacred"].system_samples.find_one({"gpu0/mig9/mem_used_mib": {
        "$exists": True}}) and [gpu["visible"] for gpu in doc["host"]["gpu_inventory"]] == [True, True]

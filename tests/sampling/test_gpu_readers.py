"""What real drivers do, row by row: old drivers keep every metric they can give, PCIe traffic never blocks the
training thread, and the newest calls are used where the driver has them."""

from __future__ import annotations

import logging

import pytest

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import DRIVERS, FakeGpu, driver
from tests.support.experiments import run_experiment
from tests.support.gpu_sampling import sample_once
from tests.support.recording import until_sampled

#: NVML calls that read a field's value (slow ones among them): the sampler thread's alone.
SAMPLER_ONLY = {"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption",
                "nvmlDeviceGetPcieThroughput", "nvmlDeviceGetFieldValues", "nvmlDeviceGetTemperature",
                "nvmlDeviceGetTemperatureV", "nvmlDeviceGetCurrentClocksEventReasons",
                "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetComputeRunningProcesses",
                "nvmlDeviceGetFanSpeed", "nvmlDeviceGetClockInfo", "nvmlDeviceGetTotalEccErrors"}


def busy_gpu() -> FakeGpu:
    return FakeGpu(util_pct=80, temp_c=61, clocks_event_reasons=4, pcie_tx_kib_s=2048, pcie_rx_kib_s=512,
                   pcie_block_s=0.02, processes=[(1234, 3 * 1024**3)])


@pytest.mark.parametrize("version", sorted(DRIVERS))
def test_every_driver_branch_gives_every_metric_it_has_and_blocks_no_caller(client, monkeypatch, version):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = driver(version, [busy_gpu()])
    watcher = GpuMongoObserver(client=client, nvml=nvml, sample_interval=0.02, slow_sample_interval=0.05)
    run_experiment(lambda _run: until_sampled(_run), watcher)
    samples = list(client["sacred"].system_samples.find({}, {"_id": 0}))
    seen = {key for sample in samples for key in sample}
    for field in ("util_pct", "mem_used_mib", "temp_c", "throttle_reasons", "power_w", "pcie_tx_mib_s"):
        assert f"gpu0/{field}" in seen, (version, field)
    assert {s["gpu0/throttle_reasons"] for s in samples if "gpu0/throttle_reasons" in s} == {4.0}
    assert {s["gpu0/temp_c"] for s in samples if "gpu0/temp_c" in s} == {61.0}
    # every reading of a field is made on the sampler thread, never on the training thread (discovering the devices
    # at the start takes cheap calls only: handles, UUIDs, names, PCI ids, memory size, MIG mode)
    readings = {function: names for function, names in nvml.threads.items() if function in SAMPLER_ONLY}
    assert readings and all(names == {"sacred-gpu-sampler"} for names in readings.values()), readings
    if "nvmlDeviceGetFieldValues" in DRIVERS[version]:  # no counters: the 20 ms call, on the sampler thread only
        assert nvml.threads["nvmlDeviceGetPcieThroughput"] == {"sacred-gpu-sampler"}
    else:  # counters: the blocking call is never made
        assert "nvmlDeviceGetPcieThroughput" not in nvml.threads
    uses_new_names = not DRIVERS[version] & {"nvmlDeviceGetTemperatureV", "nvmlDeviceGetCurrentClocksEventReasons"}
    assert ("nvmlDeviceGetTemperature" in nvml.threads) is not uses_new_names
    assert ("nvmlDeviceGetCurrentClocksThrottleReasons" in nvml.threads) is not uses_new_names


def test_pcie_traffic_comes_from_the_byte_counters_as_rates():
    values = sample_once(driver("550.54.15", [busy_gpu()]), pause=0.05)  # starting primes the counters
    # 2048 and 512 KiB/s, timed by NVML's own timestamps (µs)
    assert values["sys/gpu0/pcie_tx_mib_s"] == pytest.approx(2.0, rel=1e-3)
    assert values["sys/gpu0/pcie_rx_mib_s"] == pytest.approx(0.5, rel=1e-3)


def process_memory(processes, pids) -> dict[str, float]:
    values = sample_once(driver("550.54.15", [FakeGpu(processes=processes)]), pids=pids)
    return {key: value for key, value in values.items() if key.endswith("proc_mem_mib")}


def test_process_memory_is_matched_through_the_pid_namespace(tmp_path):
    """NVML reports the PIDs of the outermost namespace: a process whose /proc shows it as 4242 there is matched."""
    import os

    from sacred_gpu.sampling.host import ProcessTree

    (tmp_path / str(os.getpid())).mkdir()
    (tmp_path / str(os.getpid()) / "status").write_text(f"Name:\tpython\nNSpid:\t4242\t{os.getpid()}\n")
    tree = ProcessTree(proc_root=str(tmp_path))
    assert 4242 in tree.nvml_pids() and os.getpid() in tree.nvml_pids()
    assert process_memory([(4242, 3 * 1024**3)], tree.nvml_pids) == {"sys/gpu0/proc_mem_mib": 3072.0}


def test_process_memory_is_unknown_not_zero_where_nvml_lists_processes_this_one_cannot_see(caplog):
    caplog.set_level(logging.INFO, logger="sacred_gpu")
    unseen = [(2**22 + 12345, 4 * 1024**3)]  # a host PID: no such process in this PID namespace
    assert process_memory(unseen, lambda: {123}) == {}
    assert sum("host PIDs" in record.getMessage() for record in caplog.records) == 1
    assert process_memory([(1, 1024**3)], lambda: {123}) == {"sys/gpu0/proc_mem_mib": 0.0}  # others', all seen
    assert process_memory([(123, None)], lambda: {123}) == {}  # usedGpuMemory not available


def test_a_mig_gpu_listing_no_process_gives_no_process_memory():
    """NVML hides a MIG parent's processes from non-root users: an empty list there says nothing, it is not 0."""
    values = sample_once(driver("550.54.15", [FakeGpu(mig=[FakeGpu(uuid="MIG-1")], processes=[])]), pids=lambda: {123})
    assert not any(name.endswith("proc_mem_mib") for name in values)

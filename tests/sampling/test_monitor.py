"""GPU and host metrics sampled through real Sacred runs reach all three storage tiers (simulated NVML)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time

import pytest
from bson import ObjectId
from sacred.utils import TimeoutInterrupt

from sacred_gpu import GpuMongoObserver
from sacred_gpu.schema import catalog
from sacred_gpu.testing.fake_nvml import FakeGpu, FakeNvml, two_gpus
from tests.support.experiments import run_experiment
from tests.support.recording import until_sampled

FAST_SAMPLING = {"sample_interval": 0.02, "slow_sample_interval": 0.1}


def observer_for(client, nvml, **kwargs):
    return GpuMongoObserver(client=client, nvml=nvml, **{**FAST_SAMPLING, **kwargs})


def series(db, run_id, name):
    doc = db.metrics.find_one({"run_id": run_id, "name": name})
    return None if doc is None else doc["values"]


def sampler_threads():
    return [t for t in threading.enumerate() if t.name == "sacred-gpu-sampler"]


@pytest.fixture
def gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices = two_gpus()
    devices[0].util_pct, devices[0].memory_used_bytes, devices[0].power_mw = 90, 30 * 1024**3, 300_000
    devices[1].util_pct, devices[1].memory_used_bytes, devices[1].power_mw = 40, 10 * 1024**3, 150_000
    devices[0].processes = [(os.getpid(), 2 * 1024**3), (999_999_999, 5 * 1024**3)]  # ours, and a stranger's
    return devices


def test_two_gpus_reach_all_three_tiers(client, db, gpus):
    nvml = FakeNvml(gpus)
    during = {}

    def main(_run):
        time.sleep(0.5)
        during["rollups"] = db.runs.find_one({"_id": _run._id}).get("system")
        gpus[0].memory_used_bytes = 50 * 1024**3  # a peak late in the run
        time.sleep(0.3)

    run = run_experiment(main, observer_for(client, nvml), options={"--beat-interval": 0.1})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and run._failed_observers == []

    # tier 1: Sacred-format series, referenced from info.metrics, so Omniboard and Incense plot them
    refs = {ref["name"]: ref["id"] for ref in doc["info"]["metrics"]}
    for name in ("sys/gpu0/util_pct", "sys/gpu1/util_pct", "sys/gpu0/mem_used_mib", "sys/gpu0/power_w",
                 "sys/gpu0/temp_c", "sys/cpu/util_pct", "sys/proc/rss_mib", "sys/mem/used_mib"):
        assert name in refs, name
        assert db.metrics.find_one({"_id": ObjectId(refs[name])})["name"] == name
    assert set(series(db, run._id, "sys/gpu0/util_pct")) == {90.0}
    assert set(series(db, run._id, "sys/gpu1/util_pct")) == {40.0}
    assert max(series(db, run._id, "sys/gpu0/mem_used_mib")) == 50 * 1024
    assert all("." not in name and catalog.spec_for(name) for name in refs)
    steps = db.metrics.find_one({"run_id": run._id, "name": "sys/gpu0/util_pct"})["steps"]
    assert steps == sorted(set(steps)) and len(steps) >= 3  # one point per heartbeat window

    # tier 2: every sample at full resolution
    samples = list(db.system_samples.find({"run_id": run._id}).sort("t", 1))
    assert 15 <= len(samples) <= 60  # 0.8 s at 50 Hz, give or take a loaded machine
    assert all(s["gpu0/util_pct"] == 90.0 and s["gpu1/util_pct"] == 40.0 for s in samples)
    assert all(s["proc/rss_mib"] > 10 for s in samples)
    slow = [s for s in samples if "gpu0/temp_c" in s]
    assert 0 < len(slow) < len(samples)  # slow fields only every slow interval
    assert {s["gpu0/proc_mem_mib"] for s in slow} == {2048.0}  # only the training process tree's memory

    # tier 3: roll-ups in the run document, already there while the run was going
    assert during["rollups"]["gpu_count"] == 2 and during["rollups"]["gpu_mem_peak_mib"] == 30 * 1024
    system = doc["system"]
    assert system["gpu_count"] == 2 and system["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert system["gpu_mem_peak_mib"] == 50 * 1024 and system["gpu_util_mean_pct"] == 65.0
    assert system["gpus"][0]["util_mean_pct"] == 90.0 and system["gpus"][1]["name"] == "NVIDIA A100-SXM4-40GB"
    assert 0 < system["gpu_energy_wh"] < 1  # < 1 s at 450 W is < 0.125 Wh
    assert system["proc_rss_peak_mib"] > 10 and system["samples"] == len(samples)
    assert not sampler_threads()


def test_unsupported_field_is_dropped_silently(client, db, gpus, caplog):
    caplog.set_level(logging.DEBUG, logger="sacred_gpu")
    gpus[1].unsupported = {"nvmlDeviceGetFanSpeed", "nvmlDeviceGetTotalEccErrors"}
    run = run_experiment(lambda: time.sleep(0.3), observer_for(client, FakeNvml(gpus)))
    names = {ref["name"] for ref in db.runs.find_one({"_id": run._id})["info"]["metrics"]}
    assert "sys/gpu0/fan_pct" in names and "sys/gpu1/fan_pct" not in names
    assert "sys/gpu0/ecc_corrected" in names and "sys/gpu1/ecc_uncorrected" not in names
    assert not any("gpu1/fan_pct" in s for s in db.system_samples.find({"run_id": run._id}))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_lost_gpu_is_dropped_once_and_the_others_keep_reporting(client, db, gpus, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    nvml = FakeNvml(gpus)
    lost_at = {}

    def main():
        time.sleep(0.25)
        nvml.lose(1)
        lost_at["time"] = time.time()
        time.sleep(0.35)

    run = run_experiment(main, observer_for(client, nvml))
    samples = list(db.system_samples.find({"run_id": run._id}).sort("t", 1))
    with_gpu1 = [s for s in samples if "gpu1/util_pct" in s]
    after = samples[len(with_gpu1) + 2:]
    assert with_gpu1 and after and all("gpu1/util_pct" not in s and s["gpu0/util_pct"] == 90.0 for s in after)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "gpu1 was lost" in warnings[0]
    assert db.runs.find_one({"_id": run._id})["status"] == "COMPLETED"


def test_no_driver_means_host_metrics_only_and_one_info_line(client, db, caplog):
    caplog.set_level(logging.INFO, logger="sacred_gpu")
    run = run_experiment(lambda: time.sleep(0.3), observer_for(client, FakeNvml(missing=True)))
    doc = db.runs.find_one({"_id": run._id})
    names = {ref["name"] for ref in doc["info"]["metrics"]}
    assert "sys/cpu/util_pct" in names and not any(name.startswith("sys/gpu") for name in names)
    assert doc["system"]["gpu_count"] == 0 and "gpu_util_mean_pct" not in doc["system"]
    assert len([r for r in caplog.records if "GPU" in r.getMessage()]) == 1


def test_only_visible_gpus_are_sampled(client, db, gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-22222222")
    run = run_experiment(lambda: time.sleep(0.2), observer_for(client, FakeNvml(gpus)))
    sample = db.system_samples.find_one({"run_id": run._id})
    assert "gpu1/util_pct" in sample and not any(key.startswith("gpu0/") for key in sample)


def test_mig_instances_are_named_by_their_gpu_instance_id_and_listed(client, db, monkeypatch):
    """MIG instances are named as nvidia-smi and DCGM name them: by GPU-instance id (here 1 and 5), not position."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = FakeGpu(mig=[FakeGpu(uuid="MIG-aaaa", gpu_instance_id=1, memory_total_bytes=10 * 1024**3,
                               memory_used_bytes=1024**3),
                       FakeGpu(uuid="MIG-bbbb", gpu_instance_id=5, memory_total_bytes=20 * 1024**3,
                               memory_used_bytes=3 * 1024**3)])
    run = run_experiment(lambda: time.sleep(0.2), observer_for(client, FakeNvml([gpu])))
    slow = db.system_samples.find_one({"run_id": run._id, "gpu0/mig5/mem_total_mib": {"$exists": True}})
    assert slow["gpu0/mig1/mem_used_mib"] == 1024 and slow["gpu0/mig5/mem_used_mib"] == 3 * 1024
    assert slow["gpu0/mig5/mem_total_mib"] == 20 * 1024
    listed = db.runs.find_one({"_id": run._id})["host"]["gpu_inventory"][0]["mig"]
    assert [(m["uuid"], m["gpu_instance_id"], m["compute_instance_id"], m["memory_total_mib"], m["visible"])
            for m in listed] == [("MIG-aaaa", 1, 0, 10240.0, True), ("MIG-bbbb", 5, 0, 20480.0, True)]


def test_sampling_can_be_turned_off(client, db, gpus):
    run = run_experiment(lambda: time.sleep(0.2), observer_for(client, FakeNvml(gpus), sampling=False))
    doc = db.runs.find_one({"_id": run._id})
    assert "system" not in doc and db.system_samples.count_documents({}) == 0
    assert not any(ref["name"].startswith("sys/") for ref in doc["info"].get("metrics", []))


@pytest.mark.parametrize(("exception", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "INTERRUPTED"),
                                                   (TimeoutInterrupt, "TIMEOUT")])
def test_sampler_stops_with_every_end_state(client, db, gpus, exception, status):
    def main():
        time.sleep(0.15)
        raise exception()

    with pytest.raises(exception):
        run_experiment(main, observer_for(client, FakeNvml(gpus)))
    doc = db.runs.find_one()
    assert doc["status"] == status and doc["system"]["gpu_count"] == 2 and not sampler_threads()


def test_stored_values_are_always_finite_numbers(client, db, gpus):
    run = run_experiment(lambda: time.sleep(0.3), observer_for(client, FakeNvml(gpus)))
    samples = list(db.system_samples.find({"run_id": run._id}, {"_id": 0, "t": 0, "run_id": 0}))
    assert samples and all(sample for sample in samples)  # no sample, or an empty one, would check nothing
    for sample in samples:
        assert all(isinstance(v, float) and math.isfinite(v) for v in sample.values())
    docs = list(db.metrics.find({"run_id": run._id}))
    assert "sys/gpu0/util_pct" in {doc["name"] for doc in docs}
    for doc in docs:
        assert all(isinstance(v, float) and math.isfinite(v) for v in doc["values"])


def test_sampling_with_heartbeats_disabled_is_stored_at_the_end(client, db, gpus):
    run = run_experiment(lambda: time.sleep(0.2), observer_for(client, FakeNvml(gpus)),
                         options={"--beat-interval": 0})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["system"]["samples"] == db.system_samples.count_documents({"run_id": run._id}) > 3
    assert "sys/gpu0/util_pct" in {ref["name"] for ref in doc["info"]["metrics"]}


def test_a_field_added_to_the_catalog_reaches_samples_series_rollups_and_a_panel(client, db, gpus, monkeypatch):
    """The catalog drives everything: one row (and its NVML reader) and a new GPU field is sampled, stored in all
    three tiers, summed up per GPU and over the GPUs, and drawn in its panel, with no other edit."""
    from sacred_gpu import schema
    from sacred_gpu.read import store, system_panels
    from sacred_gpu.sampling import gpu_readers

    row = catalog.MetricSpec("sys/gpu{i}/sm_occupancy_pct", "%", "fast", "mean", "test reader", "SM occupancy",
                             panel="gpu-occupancy", summary="occupancy_mean_pct", summarize="mean", total="mean")
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, row))
    monkeypatch.setattr(catalog, "PANELS", (*catalog.PANELS, catalog.PanelSpec("gpu-occupancy", "SM occupancy", "%")))
    monkeypatch.setitem(gpu_readers.READERS, "sm_occupancy_pct", lambda lib, handle: 30.0 + handle * 20)

    run = run_experiment(lambda _run: until_sampled(_run), observer_for(client, FakeNvml(gpus)),
                         options={"--beat-interval": 0.1})
    doc = db.runs.find_one({"_id": run._id})
    reads = store.connect(client=client)
    samples = reads.system(run._id)
    assert set(samples["sys/gpu0/sm_occupancy_pct"].dropna()) == {30.0}
    assert set(samples["sys/gpu1/sm_occupancy_pct"].dropna()) == {50.0}
    series = reads.metrics(run._id, ["sys/gpu0/sm_occupancy_pct", "sys/gpu1/sm_occupancy_pct"], system=True)
    assert len(series) >= 2 and set(series["value"]) == {30.0, 50.0}
    assert [gpu["occupancy_mean_pct"] for gpu in doc["system"]["gpus"]] == [30.0, 50.0]
    assert doc["system"]["gpu_occupancy_mean_pct"] == 40.0
    panels = {panel.key: panel for panel in system_panels(schema.series_names(doc)[1])}
    assert panels["gpu-occupancy"].columns == {"sys/gpu0/sm_occupancy_pct": "gpu0", "sys/gpu1/sm_occupancy_pct": "gpu1"}
    assert panels["gpu-occupancy"].title == "SM occupancy" and list(panels)[-1] == "gpu-occupancy"


def test_each_heartbeat_keeps_the_last_window_values_slow_ones_included(client, db, gpus):
    """The run document's ``system_latest`` (what ``/metrics`` serves): the last window's value of every metric,
    changing as the GPUs do; slow metrics keep their last value in the windows that sampled none."""
    seen = []

    def main(_run):
        for util in (90, 10):
            gpus[0].util_pct = util
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                latest = (db.runs.find_one({"_id": _run._id}) or {}).get("system_latest") or {}
                if latest.get("values", {}).get("gpu0/util_pct") == util:
                    break
                time.sleep(0.01)
            seen.append(latest)

    observer = observer_for(client, FakeNvml(gpus), slow_sample_interval=5.0)
    run_experiment(main, observer, options={"--beat-interval": 0.05})
    assert [entry["values"]["gpu0/util_pct"] for entry in seen] == [90, 10]
    for entry in seen:  # the slow sample was taken once, at the start; every later window still has it
        assert entry["values"]["gpu0/temp_c"] > 0 and entry["values"]["gpu1/mem_total_mib"] == 40 * 1024
        assert entry["values"]["cpu/util_pct"] >= 0 and entry["t"] is not None
    assert seen[1]["t"] > seen[0]["t"]

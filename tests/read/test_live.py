"""What the running runs are doing now (``read/live.py``): a run document read as a ``LiveRun``, and its gauges."""

from __future__ import annotations

import datetime as dt

from sacred_gpu import schema
from sacred_gpu.read import gauges
from sacred_gpu.read.live import live_run

NOW = dt.datetime(2026, 12, 8, 12, 0, 0)


def running_doc(**changes) -> dict:
    doc = {
        "_id": 7, "status": "RUNNING", "experiment": {"name": "mnist"}, "start_time": NOW - dt.timedelta(hours=1),
        "heartbeat": NOW - dt.timedelta(seconds=5),
        "host": {"hostname": "gpu-box", "gpu_inventory": [
            {"index": 0, "uuid": "GPU-a", "visible": True}, {"index": 1, "uuid": "GPU-b", "visible": False}]},
        schema.METRIC_ROLLUPS_FIELD: {schema.rollup_key("val.loss"): {"last": 0.25, "last_step": 40},
                                      "acc": {"last": float("nan"), "last_step": 3}},
        schema.LATEST_FIELD: {"t": NOW, "values": {"gpu0/util_pct": 85.0, "gpu0/mem_used_mib": 1024.0,
                                                   "gpu0/throttle_reasons": 4.0, "gpu0/mig1/mem_used_mib": 512.0,
                                                   "cpu/util_pct": 50.0, "unknown/field": 1.0}},
    }
    doc.update(changes)
    return doc


def test_a_running_runs_document_as_a_live_run():
    run = live_run(running_doc(), NOW)
    assert (run.run_id, run.experiment, run.host, run.status) == (7, "mnist", "gpu-box", "RUNNING")
    assert run.heartbeat_age_s == 5 and run.gpu_uuids == {0: "GPU-a"}  # GPU 1 is not the run's
    assert run.metrics == {"val.loss": (0.25, 40)}  # the stored key unescaped; a NaN last value left out
    silent = live_run(running_doc(heartbeat=NOW - dt.timedelta(minutes=5)), NOW)
    assert silent.status == "PROBABLY_DEAD"  # the dead rule the whole house uses


def test_gauges_in_base_units_labelled_by_run_and_gpu():
    families = {family.name: family for family in gauges([live_run(running_doc(), NOW)])}
    run = ("7", "mnist", "gpu-box")
    assert families["sacred_gpu_utilization_ratio"].samples == [((*run, "0", "GPU-a"), 0.85)]
    assert families["sacred_gpu_memory_used_bytes"].samples == [((*run, "0", "GPU-a"), 1024.0 * 2**20)]
    assert families["sacred_gpu_mig_memory_used_bytes"].labels[-1] == "mig"
    assert families["sacred_gpu_mig_memory_used_bytes"].samples == [((*run, "0", "GPU-a", "1"), 512.0 * 2**20)]
    assert families["sacred_host_cpu_utilization_ratio"].samples == [(run, 0.5)]
    reasons = dict((labels[-1], value) for labels, value in families["sacred_gpu_throttle_reason"].samples)
    assert reasons["software power cap"] == 1.0 and reasons["GPU idle"] == 0.0  # bit 0x4 set
    assert families["sacred_run_metric_last"].samples == [((*run, "val.loss"), 0.25)]
    assert families["sacred_run_info"].samples == [((*run, "RUNNING"), 1.0)]
    assert families["sacred_gpu_run_info"].samples == [((*run, "0", "GPU-a"), 1.0)]
    assert families["sacred_runs_running"].samples == [((), 1.0)]
    assert not any("unknown" in name for name in families)  # a value of no catalog row is not exposed
    assert [family.name for family in gauges([])] == ["sacred_runs_running"]  # no run: families left out

"""A run's records (``record/run_records.py``): the observer's own series kept apart from a user's of the same name."""

from __future__ import annotations

import time

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment


def test_a_user_metric_named_like_the_observers_own_series_is_kept_as_logged(client, db, monkeypatch):
    """The observer's ``sys/...`` series live apart: a user's ``sys/cpu/util_pct`` keeps its 30 points, is capped like
    any user metric, and the sampler's points of that name stay in the observer's own series."""
    from sacred_gpu import schema
    from sacred_gpu.read import store

    monkeypatch.setattr(schema, "METRIC_CAP", 20)
    watcher = GpuMongoObserver(client=client, nvml=FakeNvml([]), sample_interval=0.02, slow_sample_interval=0.1)

    def main(_run):
        for step in range(30):
            _run.log_scalar("sys/cpu/util_pct", 1000.0 + step, step)
            time.sleep(0.01)

    run = run_experiment(main, watcher)
    doc = db.runs.find_one({"_id": run._id})
    named = [entry for entry in doc["info"]["metrics"] if entry["name"] == "sys/cpu/util_pct"]
    assert sorted(str(entry.get("origin")) for entry in named) == ["None", schema.SYSTEM_ORIGIN]
    user_names, system_names = schema.series_names(doc)
    assert user_names == ["sys/cpu/util_pct"] and "sys/cpu/util_pct" in system_names

    user = db.metrics.find_one({"run_id": run._id, "name": "sys/cpu/util_pct", "origin": {"$exists": False}})
    assert user["full_points"] == 20 and user["steps"][:20] == list(range(20))  # capped like any user metric
    assert doc["metric_rollups"]["sys/cpu/util_pct"]["count"] == 30

    runs = store.connect(client=client)
    logged = runs.metrics(run._id, "sys/cpu/util_pct")
    assert logged["step"].tolist() == list(range(30)) and logged["value"].tolist() == [1000.0 + s for s in range(30)]
    sampled = runs.metrics(run._id, "sys/cpu/util_pct", system=True)
    assert len(sampled) >= 1 and (sampled["value"] <= 100).all()  # the sampler's percentages, none of the user's
    assert "sys/cpu/util_pct" in runs.system(run._id).columns

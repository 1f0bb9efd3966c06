"""No exception of ours reaches Sacred (``record/guards.py``): failing writes and vanished files, one warning per
failing kind of event and run."""

from __future__ import annotations

import logging
import time

import pytest
from pymongo.errors import AutoReconnect
from sacred.observers.base import RunObserver

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.faulty_client import FaultyClient
from tests.support.recording import observer


def test_failures_during_the_run_never_reach_sacred(db, tmp_path, caplog):
    """A database outage mid-run and files that vanish: Sacred never sees an exception, nothing is lost."""
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    faulty = FaultyClient(db.client)
    observer = GpuMongoObserver(client=faulty, nvml=FakeNvml([]), sampling=False)
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights")

    def main(_run):
        faulty.outage(AutoReconnect)
        for step in range(20):
            _run.log_scalar("loss", float(step), step)
            _run.add_artifact(str(tmp_path / "missing.bin"))  # a file that does not exist
            time.sleep(0.01)
        _run.add_resource(str(tmp_path / "missing.csv"))
        time.sleep(0.2)
        faulty.restore()
        _run.add_artifact(str(artifact))
        return 42

    run = run_experiment(main, observer)
    assert run._failed_observers == []  # Sacred never saw an exception, so it kept calling us
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["result"] == 42 and faulty.failures > 0
    assert [a["name"] for a in doc["artifacts"]] == ["model.bin"]
    assert db.metrics.find_one({"run_id": run._id, "name": "loss"})["steps"] == list(range(20))
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("sacred_gpu")]
    # one warning per failing kind of event, however often it failed; one for the outage, one for its end
    assert len([m for m in messages if m.startswith("sacred-gpu: artifact_event failed")]) == 1
    assert len([m for m in messages if m.startswith("sacred-gpu: resource_event failed")]) == 1
    assert len([m for m in messages if "MongoDB write failed" in m]) == 1
    assert len([m for m in messages if "reachable again" in m]) == 1


def test_warnings_are_per_run(client, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    watcher = observer(client)

    def main(_run):
        _run.add_artifact(str(tmp_path / "missing.bin"))

    for _ in range(3):
        run_experiment(main, watcher)
    assert sum("artifact_event failed" in r.getMessage() for r in caplog.records) == 3


def test_another_observers_failed_start_leaves_no_warning_of_ours(client, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")

    class Broken(RunObserver):
        priority = 100  # called before ours

        def started_event(self, *args, **kwargs):
            raise RuntimeError("broken observer")

    with pytest.raises(RuntimeError, match="broken observer"):
        run_experiment(lambda: 1, Broken(), observer(client))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sacred_gpu")] == []

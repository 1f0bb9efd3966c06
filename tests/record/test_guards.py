"""Values BSON cannot hold and failing writes never stop a run, and nothing reaches Sacred's event loop."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from pymongo.errors import AutoReconnect
from sacred.serializer import flatten as sacred_flatten

import sacred_gpu
from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.faulty_client import FaultyClient


def test_unstorable_values_are_stored_as_sacred_stores_them(observer, db):
    weird = {
        "array": np.arange(3),
        "scalar": np.float32(1.5),
        "pair": (1, 2),
        7: "int key",
        "dotted.key": {"$dollar": 1},
        "nothing": object(),
    }

    def main(_run, arr):
        _run.info["weird"] = weird
        _run.log_scalar("np_loss", np.float32(0.25), 0)
        _run.log_scalar("np_loss", np.int64(3), 1)
        _run.log_scalar("np_loss", "not a number", 2)
        return np.float32(0.5)

    run = run_experiment(main, observer, config={"arr": np.arange(4)})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and run._failed_observers == []
    stored = doc["info"]["weird"]
    assert stored["array"] == {"py/object": "numpy.ndarray", "dtype": "int64", "values": [0, 1, 2]}
    assert stored["scalar"] == {"py/object": "numpy.float32", "dtype": "float32", "value": 1.5}
    assert stored["pair"] == {"py/tuple": [1, 2]}
    assert stored["json://7"] == "int key"
    assert stored["dotted.key"] == {"$dollar": 1}  # as the stock observer sends it: a server that refuses gets
    # Sacred's form instead (tests/test_faults_wire.py)
    assert stored["nothing"] == {"py/object": "builtins.object"}
    assert doc["result"] == 0.5  # a numpy scalar result is stored as the number it is: filtered and sorted by value
    assert doc["config"]["arr"] == sacred_flatten(np.arange(4))
    series = db.metrics.find_one({"run_id": run._id, "name": "np_loss"})
    assert series["values"] == [0.25, 3] and series["steps"] == [0, 1]  # the string is dropped, not stored


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": (1, 2)}, {"a": [1, 2]}),
        ({"x.y": 1, "$z": 2, "n\x00l": 3}, {"x.y": 1, "$z": 2, "n\u2400l": 3}),
        ({3: np.int64(4)}, {"3": 4}),
        (2**80, str(2**80)),
        ({"s": {1, 2}}, {"s": [1, 2]}),
        (np.float64(0.5), 0.5),
    ],
)
def test_bson_safe(value, expected):
    assert schema.bson_safe(value) == expected


def test_bson_safe_never_raises_on_unprintable_objects():
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

    assert schema.bson_safe(Hostile()) == "<unprintable Hostile>"


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


def test_nul_in_a_config_key_and_a_metric_name_never_stops_the_run(observer, db, client):
    """BSON keys cannot hold NUL: the config key is stored with ␀, the metric's roll-ups are still read."""

    def main(_run):
        _run.info["odd\x00key"] = "value\x00kept"
        _run.log_scalar("x\x00y", 1.0, 0)
        _run.log_scalar("x\x00y", 3.0, 1)
        time.sleep(0.15)  # heartbeats with the metric's roll-ups

    run = run_experiment(main, observer, config={"params": {"a\x00b": 1}})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and run._failed_observers == []
    assert doc["config"]["params"] == {"a\u2400b": 1} and doc["info"]["odd\u2400key"] == "value\x00kept"
    series = db.metrics.find_one({"run_id": run._id})
    assert series["name"] == "x\x00y" and series["values"] == [1.0, 3.0]
    table = sacred_gpu.connect(client=client).runs(metrics={"x\x00y": ["max", "last"]})
    assert table.loc[run._id, "x\x00y.max"] == 3.0 and table.loc[run._id, "x\x00y.last"] == 3.0

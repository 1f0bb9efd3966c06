"""Metric series read back (``read/series.py``): chunks stored as lists by earlier versions beside packed ones."""

from __future__ import annotations

import sacred_gpu
from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment


def test_chunks_stored_as_lists_by_earlier_versions_read_with_packed_ones(client, db, monkeypatch):
    monkeypatch.setattr(schema, "METRIC_CAP", 50)
    monkeypatch.setattr(schema, "CHUNK_POINTS", 40)

    def main(_run):
        for step in range(200):
            _run.log_scalar("loss", step / 4, step)

    run = run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                         options={"--beat-interval": 10.0})
    first = db.metric_chunks.find_one({}, sort=[("seq", 1)])
    assert first["steps"]["dtype"] == "<i8" and first["timestamps"]["dtype"] == "<M8[ms]"
    before = sacred_gpu.connect(client=client).metrics(run._id)
    unpacked = {key: schema.unpack_column(first[key]) for key in ("steps", "values")}
    db.metric_chunks.update_one({"_id": first["_id"]}, {"$set": {
        **{key: column.tolist() for key, column in unpacked.items()},
        "timestamps": schema.unpack_column(first["timestamps"]).astype(object).tolist()}})
    after = sacred_gpu.connect(client=client).metrics(run._id)
    assert after["step"].tolist() == list(range(200)) and after["value"].tolist() == [s / 4 for s in range(200)]
    assert after.equals(before) and str(after["timestamp"].dtype).startswith("datetime64")

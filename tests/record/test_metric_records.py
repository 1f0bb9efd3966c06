"""A metric batch as records (``record/metric_records.py``): decimation, chunks past the cap, roll-ups; no 16 MB
failure for a series of any length."""

from __future__ import annotations

import bson
import numpy as np

from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.record.metric_records import MetricSeries, _kept
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.recording import LIMIT


def test_decimation_keeps_at_most_twice_the_cap_and_spans_the_series():
    kept = _kept(0, 1_000_000, 1000)
    assert kept[:1000] == list(range(1000)) and len(kept) <= 2000 + 20
    assert kept == sorted(set(kept)) and kept[-1] > 500_000  # the closing record adds the very last point
    assert kept[1000:1003] == [1001, 1003, 1005]  # past the cap: one point in two, ...
    # the same points are kept whatever the batch boundaries
    pieces = [i + start for start in range(0, 1_000_000, 777) for i in _kept(start, min(start + 777, 1_000_000), 1000)]
    assert pieces == kept


def test_series_records_hold_every_point_once_in_chunks_past_the_cap():
    series = MetricSeries("loss", schema.new_object_id(), cap=100, chunk_points=30)
    seq = iter(range(1, 10_000)).__next__
    records = []
    for start in range(0, 1000, 70):
        steps = list(range(start, min(start + 70, 1000)))
        records += series.records(steps, [float(s) for s in steps], [None] * len(steps), seq)
    records += series.closing_records(seq)
    chunks = [r for r in records if r["op"] == "chunk"]
    chunked = [s for r in chunks for s in schema.unpack_column(r["steps"]).tolist()]
    sacred = [s for r in records if r["op"] == "metric" for s in r["steps"]]
    assert chunked == list(range(100, 1000))  # full resolution past the cap, each point once
    assert [v for r in chunks for v in schema.unpack_column(r["values"]).tolist()] == [float(s) for s in chunked]
    assert all(r["timestamps"] == [None] * len(schema.unpack_column(r["steps"])) for r in chunks)  # odd: a list
    assert sacred[:100] == list(range(100)) and len(sacred) <= 201 and sacred[-1] == 999
    assert all(len(schema.unpack_column(r["steps"])) <= 30 for r in records)
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert all(r.get("full_points") == 100 for r in records if r["op"] == "metric" and r["steps"][0] >= 100)


def test_two_million_point_metric_stores_without_error(client, db):
    def main(_run):
        for step in range(2_000_000):
            _run.log_scalar("loss", step * 0.5, step)

    run = run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                         options={"--beat-interval": 1.0})
    doc = db.metrics.find_one({"run_id": run._id, "name": "loss"})
    assert len(bson.encode(doc)) < LIMIT and doc["full_points"] == schema.METRIC_CAP
    assert doc["steps"][: schema.METRIC_CAP] == list(range(schema.METRIC_CAP))
    assert doc["steps"][-1] == 1_999_999 and len(doc["steps"]) <= 2 * schema.METRIC_CAP + 1
    chunks = list(db.metric_chunks.find({"metric_id": doc["_id"]}).sort("seq", 1))
    steps = np.concatenate([schema.unpack_column(chunk["steps"]) for chunk in chunks])
    assert steps.tolist() == list(range(schema.METRIC_CAP, 2_000_000))
    values = np.concatenate([schema.unpack_column(chunk["values"]) for chunk in chunks])
    assert values.dtype == np.float64 and (values == steps * 0.5).all()
    assert max(len(bson.encode(c)) for c in db.metric_chunks.find({"metric_id": doc["_id"]})) < LIMIT


def test_rollups_follow_every_point_and_skip_nan():
    series = MetricSeries("loss", schema.new_object_id(), cap=4, chunk_points=3)
    seq = iter(range(1, 100)).__next__
    series.records([0, 1, 2], [0.5, float("nan"), 0.25], [None] * 3, seq)
    series.records([3, 4, 5, 6], [0.75, 0.1, float("nan"), 0.3], [None] * 4, seq)
    assert series.rollup == {"count": 5, "sum": 1.9, "mean": 1.9 / 5, "first": 0.5, "first_step": 0, "min": 0.1,
                             "min_step": 4, "max": 0.75, "max_step": 3, "last": 0.3, "last_step": 6}

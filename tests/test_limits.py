"""No 16 MB failures: metric series of any length and captured output of any size store without error."""

from __future__ import annotations

import bson
import gridfs

from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.sampling.fake_nvml import FakeNvml
from sacred_gpu.series import MetricSeries, _kept

from .conftest import run_experiment

LIMIT = 16 * 1024 * 1024


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
    chunked = [s for r in records if r["op"] == "chunk" for s in r["steps"]]
    sacred = [s for r in records if r["op"] == "metric" for s in r["steps"]]
    assert chunked == list(range(100, 1000))  # full resolution past the cap, each point once
    assert sacred[:100] == list(range(100)) and len(sacred) <= 201 and sacred[-1] == 999
    assert all(len(r["steps"]) <= 30 for r in records)
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
    steps = [s for chunk in db.metric_chunks.find({"metric_id": doc["_id"]}).sort("seq", 1) for s in chunk["steps"]]
    assert steps == list(range(schema.METRIC_CAP, 2_000_000))
    assert max(len(bson.encode(c)) for c in db.metric_chunks.find({"metric_id": doc["_id"]})) < LIMIT


def test_hundred_megabytes_of_output_store_capped_with_the_full_output_as_an_artifact(client, db):
    line = "x" * 99 + "\n"

    def main():
        print("FIRST LINE")
        for _ in range(100):
            print(line * 10_000, end="")  # 1 MB at a time, 100 MB in all
        print("LAST LINE")

    observer = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False, output_artifact=True)
    run = run_experiment(main, observer, options={"--beat-interval": 1.0})
    doc = db.runs.find_one({"_id": run._id})
    assert len(bson.encode(doc)) < LIMIT and doc["status"] == "COMPLETED"
    out = doc["captured_out"]
    assert out.startswith("FIRST LINE") and out.endswith("LAST LINE\n") and "sacred-gpu: " in out
    assert len(out) < schema.OUTPUT_CAP + 200
    [artifact] = doc["artifacts"]
    stored = gridfs.GridFS(db).get(artifact["file_id"])
    assert artifact["name"] == "captured_out.txt" and stored.length == len("FIRST LINE\n") + 100_000_000 + 10


def test_rollups_follow_every_point_and_skip_nan():
    series = MetricSeries("loss", schema.new_object_id(), cap=4, chunk_points=3)
    seq = iter(range(1, 100)).__next__
    series.records([0, 1, 2], [0.5, float("nan"), 0.25], [None] * 3, seq)
    series.records([3, 4, 5, 6], [0.75, 0.1, float("nan"), 0.3], [None] * 4, seq)
    assert series.rollup == {"count": 5, "sum": 1.9, "mean": 1.9 / 5, "first": 0.5, "first_step": 0, "min": 0.1,
                             "min_step": 4, "max": 0.75, "max_step": 3, "last": 0.3, "last_step": 6}

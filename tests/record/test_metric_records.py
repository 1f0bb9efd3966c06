"""No 16 MB failures: metric series of any length and captured output of any size store without error."""

from __future__ import annotations

import datetime as dt

import bson
import gridfs
import numpy as np
import pytest

import sacred_gpu
from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.record.metric_records import MetricSeries, _kept
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment

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


def test_chunk_columns_pack_to_eight_bytes_a_point_and_read_back_as_bson_would_store_them():
    naive = [dt.datetime(2026, 1, 2, 3, 4, 5, 678_999) + dt.timedelta(milliseconds=i) for i in range(3)]
    aware = [t.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))) for t in naive]
    cases = {"<i8": [0, 5, -(2**63)], "<f8": [0.5, float("nan"), float("inf")], "<M8[ms]": naive}
    for dtype, items in cases.items():
        packed = schema.pack_column(items)
        assert packed["dtype"] == dtype and len(packed["data"]) == 8 * len(items)
        back = schema.unpack_column(bson.decode(bson.encode({"c": packed}))["c"])
        as_bson = bson.decode(bson.encode({"c": items}))["c"]  # what a list would read back as
        if dtype == "<M8[ms]":
            assert back.astype(object).tolist() == as_bson == [t.replace(microsecond=678_000 + 1000 * i)
                                                                for i, t in enumerate(naive)]
        else:
            assert np.array_equal(back, np.array(as_bson), equal_nan=True) and back.dtype == np.dtype(dtype)
    aware_back = schema.unpack_column(schema.pack_column(aware)).astype(object).tolist()
    assert aware_back == [t - dt.timedelta(hours=2) for t in as_bson]  # aware: stored as UTC
    # anything not all of one packable kind is stored as the list it is
    for odd in ([1, 2.5], [True, False], [2**64], [None, None], ["a"], [np.float32(1.0)], []):
        assert schema.pack_column(odd) == odd and schema.unpack_column(schema.pack_column(odd)) == odd
    for hostile in ({"dtype": "object", "data": b"\0" * 8}, {"dtype": "<f8", "data": b"\0" * 7}, "1,2", None):
        with pytest.raises(ValueError, match="not a chunk column"):
            schema.unpack_column(hostile)


def test_chunk_summary_of_packed_columns_equals_that_of_lists():
    rng = np.random.default_rng(3)
    values = rng.normal(size=1_234).tolist()
    values[7] = float("nan")
    values[200:300] = [float("nan")] * 100  # a bucket of NaN only
    values[500] = 99.0
    steps = list(range(1_000, 2_234))
    stamps = [dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i) for i in range(1_234)]
    packed = schema.chunk_summary(*(schema.unpack_column(schema.pack_column(c)) for c in (steps, values, stamps)))
    listed = schema.chunk_summary(steps, values, stamps)
    assert packed["first_step"] == listed["first_step"] == 1_000 and packed["last_step"] == 2_233
    assert packed["first_time"] == stamps[0] and packed["last_time"] == stamps[-1]
    assert bson.encode(packed) == bson.encode(listed)  # same fields, same plain Python values
    preview = packed["preview"]
    assert preview["steps"][0] == 1_000 and preview["steps"][-1] == 2_233 and 99.0 in preview["values"]
    assert not any(1_200 <= s < 1_300 for s in preview["steps"])  # the all-NaN bucket has no point
    assert len(preview["steps"]) <= 2 + 2 * 13 and preview["steps"] == sorted(preview["steps"])
    assert schema.chunk_summary([1, 2], ["a", "b"], [None, None]) == {}  # odd points: read whole


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

"""Packed chunk columns against lists: bytes per chunk and the time to read a 2,000,000-point series.

    python benchmarks/chunk_columns.py [--points 2000000] [--repeats 3]

The same series (steps 0, 1, 2, ..., float values, millisecond timestamps) is stored twice, in two mongomock
databases, the way the observer stores it (``MetricSeries`` records applied by ``MongoWriter``): once with chunk
columns packed (:func:`sacred_gpu.schema.pack_column`, what the observer does) and once with every column a list (as
before packing; ``pack_column`` replaced for the run). Printed: the largest chunk record's BSON size (what the
journal writes and MongoDB receives) and the median time of ``RunStore.metrics()`` reading the whole series, with
the ratio of the two arms measured side by side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import bson
import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sacred_gpu import connection, schema  # noqa: E402
from sacred_gpu.series import MetricSeries  # noqa: E402
from sacred_gpu.store import RunStore  # noqa: E402
from sacred_gpu.writer import MongoWriter  # noqa: E402

BATCH = 50_000  # points per heartbeat


def stored_series(points: int) -> tuple[RunStore, int]:
    """A run 1 holding series 'loss' of ``points`` points; returns its store and the largest chunk record's bytes."""
    client = connection.open_client(client=mongomock.MongoClient())
    writer = MongoWriter(client["sacred"])
    series = MetricSeries("loss", schema.new_object_id())
    seq = iter(range(1, 1 << 30)).__next__
    start = dt.datetime(2026, 1, 1)
    head = {"_id": series.metric_id, "run_id": 1, "name": "loss", "steps": [], "values": [], "timestamps": []}
    largest = 0
    for first in range(0, points, BATCH):
        steps = list(range(first, min(first + BATCH, points)))
        stamps = [start + dt.timedelta(milliseconds=step) for step in steps]
        for rec in series.records(steps, [step * 0.5 for step in steps], stamps, seq):
            if rec["op"] == "chunk":
                largest = max(largest, len(bson.encode(rec)))
                writer.apply(1, rec, "", {}, False)
            else:  # what append_metric's $push leaves (mongomock copies the document on every update)
                for key in ("steps", "values", "timestamps"):
                    head[key] += rec[key]
                head.update({key: rec[key] for key in ("full_points",) if key in rec})
    writer.metrics.insert_one(head)
    return RunStore(client["sacred"]), largest


def read_time(store: RunStore, points: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        frame = store.metrics(1)
        times.append(time.perf_counter() - began)
        assert len(frame) == points and frame["step"].iloc[-1] == points - 1
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    packed_store, packed_bytes = stored_series(args.points)
    with mock.patch.object(schema, "pack_column", lambda items: list(items)):
        listed_store, listed_bytes = stored_series(args.points)
    packed_time = listed_time = 0.0
    for _ in range(2):  # the arms alternate, so both see the machine's noise alike
        packed_time += read_time(packed_store, args.points, args.repeats)
        listed_time += read_time(listed_store, args.points, args.repeats)
    print(f"largest chunk record: packed {packed_bytes / 1e6:.2f} MB, lists {listed_bytes / 1e6:.2f} MB "
          f"(ratio {packed_bytes / listed_bytes:.2f})")
    print(f"RunStore.metrics() of {args.points:,} points (median of {args.repeats}, mean of 2 rounds): packed "
          f"{packed_time / 2:.2f} s, lists {listed_time / 2:.2f} s (ratio {packed_time / listed_time:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Packed chunk columns against lists: bytes per chunk and the time to read a 2,000,000-point series.

    python benchmarks/chunk_columns.py [--points 2000000] [--repeats 3]

The same series (steps 0, 1, 2, ..., float values, timestamps) is stored twice, in two mongomock databases, the way
the observer stores it (``benchmarks/run_page.py``'s ``write_metric``: ``MetricSeries`` records applied by
``MongoWriter``, 50,000 points a heartbeat): once with chunk columns packed (:func:`sacred_gpu.schema.pack_column`,
what the observer does) and once with every column a list (as before packing; ``pack_column`` replaced for the run).
Printed: the largest chunk document's BSON size (its points, bounds and preview, as MongoDB stores it) and the
median time of ``RunStore.metrics()`` reading the whole series, with the ratio of the two arms measured side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import bson
import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.run_page import write_metric  # noqa: E402
from sacred_gpu import connection, schema  # noqa: E402
from sacred_gpu.read.store import RunStore  # noqa: E402
from sacred_gpu.record.writer import MongoWriter  # noqa: E402

BATCH = 50_000  # points a heartbeat (1 s)


def stored_series(points: int) -> tuple[RunStore, int]:
    """A run 1 holding series 'loss' of ``points`` points; returns its store and the largest chunk document's bytes."""
    client = connection.open_client(client=mongomock.MongoClient())
    writer = MongoWriter(client["sacred"])
    write_metric(writer, 1, "loss", points, points / BATCH, 1.0, iter(range(1, 1 << 30)).__next__)
    largest = max((len(bson.encode(chunk)) for chunk in writer.chunks.find()), default=0)
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
    print(f"largest chunk document: packed {packed_bytes / 1e6:.2f} MB, lists {listed_bytes / 1e6:.2f} MB "
          f"(ratio {packed_bytes / listed_bytes:.2f})")
    print(f"RunStore.metrics() of {args.points:,} points (median of {args.repeats}, mean of 2 rounds): packed "
          f"{packed_time / 2:.2f} s, lists {listed_time / 2:.2f} s (ratio {packed_time / listed_time:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

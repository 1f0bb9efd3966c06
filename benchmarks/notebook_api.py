"""The notebook API on many runs: a metric column and a metric filter must cost one page, not a scan of every run.

    python benchmarks/notebook_api.py [--runs 5000 20000] [--repeat 5]

Builds mongomock databases of ``--runs`` runs as GpuMongoObserver writes them (run documents with config and stored
metric roll-ups, one 10-point ``loss`` series each) and times, median of ``--repeat``, side by side in one process:
``runs(limit=50)`` (the plain page), ``runs(limit=50, metrics={"loss": "min"})`` (a roll-up column) and
``runs("loss.min < 0.005", limit=50)`` (a metric filter). Prints seconds and each one's ratio to the plain page
(target: at most 2.0 at every size: the roll-ups are read from the page's run documents and the filter runs on
their stored roll-ups, so both cost about a page; the issue measured 2.5 s and 6.3 s at 5,000 runs before).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sacred_gpu import connection, schema  # noqa: E402
from sacred_gpu.read import connect  # noqa: E402

TARGET = 2.0


def build(runs: int) -> mongomock.MongoClient:
    client = connection.open_client(client=mongomock.MongoClient())
    db = client["sacred"]
    start = dt.datetime(2026, 1, 1)
    run_docs, metric_docs = [], []
    for run_id in range(1, runs + 1):
        metric_id = schema.new_object_id()
        values = [1.0 / (run_id + step) for step in range(10)]
        roll: dict = {}
        schema.update_rollup(roll, list(range(10)), values)
        began = start + dt.timedelta(minutes=run_id)
        run_docs.append({"_id": run_id, "format": schema.FORMAT, "experiment": {"name": "exp"}, "status": "COMPLETED",
                         "start_time": began, "stop_time": began + dt.timedelta(hours=1), "heartbeat": began,
                         "host": {"hostname": "node1"}, "config": {"lr": 10 ** -(run_id % 4)},
                         "info": {"metrics": [{"name": "loss", "id": str(metric_id)}]}, "result": 0.5,
                         schema.METRIC_ROLLUPS_FIELD: {"loss": roll}})
        metric_docs.append({"_id": metric_id, "run_id": run_id, "name": "loss", "steps": list(range(10)),
                            "values": values, "timestamps": [began] * 10})
    db.runs.insert_many(run_docs)
    db.metrics.insert_many(metric_docs)
    for collection, keys in schema.INDEXES:
        db[getattr(schema.Collections(), collection)].create_index(keys)
    return client


def median_seconds(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    met = True
    print(f"{'runs':>7} {'plain page s':>13} {'loss.min column s':>18} {'ratio':>6} {'loss.min filter s':>18} "
          f"{'ratio':>6}")
    for runs in args.runs:
        store = connect(client=build(runs))
        plain = median_seconds(lambda: store.runs(limit=50), args.repeat)
        column = median_seconds(lambda: store.runs(limit=50, metrics={"loss": "min"}), args.repeat)
        filtered = median_seconds(lambda: store.runs("loss.min < 0.005", limit=50), args.repeat)
        assert len(store.runs("loss.min < 0.005", limit=50)) == 50
        met &= column / plain <= TARGET and filtered / plain <= TARGET
        print(f"{runs:>7} {plain:>13.3f} {column:>18.3f} {column / plain:>6.2f} {filtered:>18.3f} "
              f"{filtered / plain:>6.2f}")
    print(f"target: each ratio <= {TARGET} -> {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

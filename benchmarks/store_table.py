"""The runs table's cost must not grow with series length: ``store.runs()`` on 2,000 runs with 5 metrics each.

    python benchmarks/store_table.py [--runs 2000] [--repeat 7] [--stock]

Builds mongomock databases of ``--runs`` runs with 5 metric series each, shaped as GpuMongoObserver writes them
(run documents with config, system and metric roll-ups; Sacred-format metric documents), once with 10-point and
once with 10,000-point series (with ``--stock``, also the same two as Sacred's stock observer writes them, with no
roll-ups stored: the page's roll-ups are then aggregated from the series, which mongomock does by copying every
metric document, minutes for the long series).
Times ``store.runs(limit=50, metrics=<3 roll-up columns>)`` (median of ``--repeat``) and prints the ratio between
the long-series and the short-series database (target: at most 1.3) and the time itself (target on mongomock: under
0.5 s).

To fit 100 million points in memory, documents are loaded into mongomock's store directly and all series of one
length share their lists (mongomock copies whatever it returns, so reads cost what they would with distinct lists).
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
from sacred_gpu.read.store import connect  # noqa: E402

METRICS = ("loss", "val_loss", "acc", "val_acc", "lr")
COLUMNS = {"val_loss": "min", "val_acc": "max", "loss": "last"}


def build(runs: int, points: int, ours: bool) -> mongomock.MongoClient:
    client = connection.open_client(client=mongomock.MongoClient())
    db = client["sacred"]
    start = dt.datetime(2026, 1, 1)
    steps = list(range(points))
    values = [1.0 / (i + 1) for i in range(points)]
    stamps = [start + dt.timedelta(seconds=i) for i in range(points)]
    run_docs, metric_docs = [], []
    for run_id in range(1, runs + 1):
        began = start + dt.timedelta(minutes=run_id)
        refs, rollups = [], {}
        for name in METRICS:
            metric_id = schema.new_object_id()
            refs.append({"name": name, "id": str(metric_id)})
            metric_docs.append({"_id": metric_id, "run_id": run_id, "name": name, "steps": steps, "values": values,
                                "timestamps": stamps})
            rollups[name] = {"count": points, "min": values[-1], "min_step": steps[-1], "max": values[0],
                             "max_step": 0, "first": values[0], "first_step": 0, "last": values[-1],
                             "last_step": steps[-1], "mean": sum(values) / points}
        doc = {"_id": run_id, "experiment": {"name": f"exp{run_id % 7}"}, "status": "COMPLETED",
               "start_time": began, "stop_time": began + dt.timedelta(hours=1), "heartbeat": began,
               "host": {"hostname": "node1"}, "config": {"lr": 10 ** -(run_id % 4), "layers": [64, 32],
                                                         "optim": {"name": "adam", "beta": 0.9}},
               "info": {"metrics": refs}, "result": 0.5, "captured_out": "epoch done\n" * 100}
        if ours:
            doc[schema.METRIC_ROLLUPS_FIELD] = rollups
            doc[schema.SYSTEM_FIELD] = {"gpu_count": 2, "gpu_model": "NVIDIA H100", "gpu_mem_peak_mib": 30000.0,
                                        "gpu_util_mean_pct": 80.0}
        run_docs.append(doc)
    load_directly(db.runs, run_docs)
    load_directly(db.metrics, metric_docs)
    return client


def load_directly(collection: mongomock.Collection, docs: list[dict]) -> None:
    """Put ``docs`` into a mongomock collection's store without copying them (``insert_many`` copies each)."""
    collection.insert_one({"_id": "probe"})  # let mongomock create the collection, then load the documents
    collection.delete_one({"_id": "probe"})
    for doc in docs:
        collection._store[doc["_id"]] = doc


def timed(client: mongomock.MongoClient, repeat: int) -> tuple[float, int]:
    store = connect(client=client)
    durations, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        table = store.runs(limit=50, metrics=COLUMNS)
        durations.append(time.perf_counter() - started)
        rows = len(table)
        assert table["val_loss.min"].notna().all()
    return statistics.median(durations), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--stock", action="store_true", help="also time databases written by Sacred's observer")
    args = parser.parse_args()
    print(f"store.runs(limit=50, 3 roll-up columns) over {args.runs} runs x {len(METRICS)} metrics, median of "
          f"{args.repeat}")
    results = {}
    for ours in (True, False) if args.stock else (True,):
        for points in (10, 10_000):
            client = build(args.runs, points, ours)
            results[ours, points], rows = timed(client, args.repeat)
            label = "GpuMongoObserver" if ours else "Sacred's observer"
            print(f"  {label:<18} {points:>6}-point series: {results[ours, points] * 1000:7.1f} ms ({rows} rows)")
    ratio = results[True, 10_000] / results[True, 10]
    print(f"ratio long/short, databases written by GpuMongoObserver: {ratio:.2f} "
          f"(target <= 1.3 -> {'MET' if ratio <= 1.3 else 'NOT MET'}); time {results[True, 10_000] * 1000:.0f} ms "
          f"(target < 500 ms -> {'MET' if results[True, 10_000] < 0.5 else 'NOT MET'})")
    if args.stock:
        stock = results[False, 10_000] / results[False, 10]
        print(f"ratio long/short, databases written by Sacred's observer (roll-ups aggregated per page): {stock:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Query recorded runs from a notebook with ``sacred_gpu.connect()`` (pandas DataFrames).

    python examples/query_runs.py                       # on runs it records first into an in-memory database
    python examples/query_runs.py localhost:27017:sacred  # on your own database

Each step below is what a notebook cell would hold.
"""

from __future__ import annotations

import sys

import pandas as pd

import sacred_gpu

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)

if len(sys.argv) > 1:  # what sacred-board -m takes: host:port:db, a db name, or a mongodb:// URI
    store = sacred_gpu.connect(sys.argv[1])
else:  # record the example runs first, into mongomock
    import mongomock

    from dashboard.demo import populate

    client = mongomock.MongoClient()
    populate(client, epochs=40)
    store = sacred_gpu.connect(client=client)

# The runs table: one row per run, config flattened, metric roll-ups as columns (min, max, mean, first, last,
# min_step, max_step), read from roll-ups stored in each run document.
table = store.runs(metrics={"val_loss": ["min", "min_step"], "val_acc": "last"})
print(table[["experiment", "status", "duration", "config.learning_rate", "val_loss.min", "val_loss.min_step",
             "val_acc.last"]])

# Filter in the query language (or with a MongoDB filter of safe operators); sort by any column.
best = store.runs("status == COMPLETED and config.learning_rate >= 0.001 and val_loss.min < 1",
                  sort="val_loss.min", metrics={"val_loss": "min"})
print(best[["config.learning_rate", "config.hidden_units", "val_loss.min"]])

# One run's metric series (long format: name, step, timestamp, value), pivoted for plotting: the best one above.
run_id = best.index[0]
series = store.metrics(run_id).pivot_table(index="step", columns="name", values="value")
print(series[["train_loss", "val_loss", "val_acc"]].tail())

# GPU and host samples (a DatetimeIndex, one column per metric), averaged in the database into at most 20 time
# buckets. Runs shorter than the sample interval (1 s by default) have none.
samples = store.system(run_id, max_points=20)
print(samples.filter(like="sys/proc/").tail() if not samples.empty else f"run {run_id} has no system samples")

# Tag and annotate, as Omniboard does (omniboard.tags / omniboard.notes).
store.set_tags(run_id, ["example"])
store.set_notes(run_id, "recorded by examples/query_runs.py")
print(store.runs("tags contains example")[["tags", "notes"]])

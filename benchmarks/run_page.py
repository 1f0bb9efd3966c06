"""sacred-board run page: server time to build the plots of a run with a 2,000,000-point metric and 24 h of 1 Hz
GPU samples, and the points sent per trace.

    python benchmarks/run_page.py [--points 2000000] [--hours 24] [--beat 10] [--repeat 3]

Builds a mongomock database holding one run as GpuMongoObserver writes it:
- metrics ``loss`` (``--points`` points over ``--hours``, noisy, with spikes), ``val_loss`` and ``lr`` (a
  thousandth as many): the points go through ``sacred_gpu.record.metric_records.MetricSeries`` in heartbeat-sized batches (one
  batch per ``--beat`` seconds, as the observer hands them over), and the records it makes are applied by
  ``MongoWriter``: chunk records with ``MongoWriter.apply`` (so each chunk gets its ``first_step``..``last_step``
  and preview), Sacred's document built from the metric records' points as ``append_metric``'s ``$push``es leave
  it (pushed once: mongomock copies the document on every ``$push``, hours for thousands of batches);
- system metrics from the real sampling pipeline (``Sampler.tick`` -> ``SystemMonitor.window``) driven by a fake
  clock at 1 Hz, two simulated GPUs (``FakeNvml``) and a replayed host (as benchmarks/month_run.py): every sample
  written by ``MongoWriter.insert_samples`` (tier 2), the heartbeat windows as Sacred-format ``sys/...`` series
  (tier 1, accumulated and inserted once like month_run.py does) and the roll-ups in the run document (tier 3);
- the run document with ``info.metrics``, ``metric_rollups`` and ``system``.

Then times what the page's callbacks run (median of ``--repeat``): the Metrics and System tabs' layouts (one
read of the run's plot context, the components), one ``run_metrics.metric_panel`` per metric (overview, x = step, no
smoothing), ``run_system.system_figures`` for every system panel; their sum is the target (under 2 s on mongomock).
The System tab's figures' JSON, as Dash sends it, is measured against its own target (issue 16: <= 300 KB). Beside it: the points of the largest trace and the JSON
bytes of the figures, a smoothed wall-time overview, and zooms (which read chunks or samples of the range).
Building the database is not timed (about half a minute); its objects are then frozen out of the garbage
collector's reach (``gc.freeze``), as a server reading MongoDB does not hold them. The machine's load average is
printed: other processes on a small machine show in these timings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.month_run import FakeClock, simulated_monitor  # noqa: E402
from dashboard import figures, run_metrics, run_system  # noqa: E402
from dashboard.board import Board  # noqa: E402
from sacred_gpu import connection, schema  # noqa: E402
from sacred_gpu.read import system_panels  # noqa: E402
from sacred_gpu.read.store import connect  # noqa: E402
from sacred_gpu.record.metric_records import MetricSeries  # noqa: E402
from sacred_gpu.record.writer import MongoWriter  # noqa: E402

START = dt.datetime(2026, 1, 1)
TARGET_S = 2.0
#: The System tab's figures, JSON bytes per page load (issue 16).
SYSTEM_JSON_TARGET = 300_000


def write_metric(writer: MongoWriter, run_id: int, name: str, count: int, seconds: float, beat: float,
                 seq: Callable[[], int]) -> tuple[dict, dict]:
    """Write one metric series as the observer does; returns its ``info.metrics`` entry and roll-up."""
    series = MetricSeries(name, schema.new_object_id())
    rng = random.Random(name)
    per_batch = max(1, round(count * beat / seconds))
    doc = {"_id": series.metric_id, "run_id": run_id, "name": name, "steps": [], "values": [], "timestamps": []}
    for first in range(0, count, per_batch):
        steps = list(range(first, min(first + per_batch, count)))
        values = [1.0 / (1 + s / (count / 20)) + rng.gauss(0, 0.02) + (5.0 if rng.random() < 1e-5 else 0.0)
                  for s in steps]
        stamps = [START + dt.timedelta(seconds=s * seconds / count) for s in steps]
        records = series.records(steps, values, stamps, seq) + (series.closing_records(seq) if steps[-1] == count - 1
                                                                else [])
        for rec in records:
            if rec["op"] == "chunk":
                writer.apply(run_id, rec, "", {}, False)
            else:  # what append_metric's $push leaves
                for key in ("steps", "values", "timestamps"):
                    doc[key] += rec[key]
                doc["seq"] = rec["seq"]
                if "full_points" in rec:
                    doc["full_points"] = rec["full_points"]
    writer.metrics.insert_one(doc)
    return {"name": name, "id": str(series.metric_id)}, dict(series.rollup)


def write_system(writer: MongoWriter, run_id: int, seconds: int, beat: int) -> tuple[list[dict], dict]:
    """24 h (``seconds``) of 1 Hz samples through the real sampling pipeline; returns info.metrics entries and the
    ``system`` roll-ups."""
    clock = FakeClock()
    gpus, sampler, monitor = simulated_monitor(clock)
    series: dict[str, dict[str, list]] = {}
    rollups: dict = {}

    def keep(points: dict) -> None:
        for name, (step, value, stamp) in points.items():
            doc = series.setdefault(name, {"steps": [], "values": [], "timestamps": []})
            doc["steps"].append(step), doc["values"].append(value), doc["timestamps"].append(stamp)

    for tick in range(seconds):
        clock.now = float(tick + 1)
        gpus[0].util_pct = 60 + int(35 * abs(math.sin(tick / 900))) + (5 if tick % 600 == 0 else 0)
        gpus[1].util_pct = 40 + (tick // 60) % 50
        gpus[0].memory_used_bytes = (40 + (tick // 3600) % 30) * 1024**3
        gpus[1].memory_used_bytes = (20 + (tick // 1800) % 15) * 1024**3
        gpus[0].power_mw, gpus[1].power_mw = 300_000 + 2_000 * (tick % 100), 200_000 + 1_000 * (tick % 50)
        gpus[0].temp_c, gpus[1].temp_c = 60 + (tick // 300) % 20, 50 + (tick // 600) % 15
        sampler.tick(slow=tick % 10 == 0)
        if tick % beat == beat - 1 or tick == seconds - 1:
            window = monitor.window()
            writer.insert_samples(run_id, window.samples)
            keep(window.points)
            rollups = window.rollups
    keep(monitor.thinner.flush())
    refs = []
    for name, doc in series.items():
        metric_id = schema.new_object_id()
        own = {schema.ORIGIN: schema.SYSTEM_ORIGIN}  # the observer's own series, as it marks them
        writer.metrics.insert_one({"_id": metric_id, "run_id": run_id, "name": name, **own, **doc})
        refs.append({"name": name, "id": str(metric_id), **own})
    return refs, rollups


def build(points: int, hours: float, beat: int) -> tuple[Any, int]:
    client = connection.open_client(client=mongomock.MongoClient())
    writer = MongoWriter(client["sacred"])
    writer.ensure_indexes()
    seconds = int(hours * 3600)
    run_id = writer.insert_run({"experiment": {"name": "train_big"}, "status": schema.RUNNING, "start_time": START,
                                "heartbeat": START, "config": {"lr": 0.001}, "host": {"hostname": "node1"},
                                "info": {}, "format": schema.FORMAT, "captured_out": ""})
    seq = itertools.count(1).__next__
    refs, rollups = [], {}
    for name, count in (("loss", points), ("val_loss", points // 1000), ("lr", points // 1000)):
        ref, rollup = write_metric(writer, run_id, name, count, seconds, beat, seq)
        refs.append(ref)
        rollups[schema.rollup_key(name)] = rollup
    system_refs, system = write_system(writer, run_id, seconds, beat)
    stop = START + dt.timedelta(seconds=seconds)
    writer.update_run(run_id, {"status": schema.COMPLETED, "stop_time": stop, "heartbeat": stop,
                               "info": {"metrics": refs + system_refs}, schema.METRIC_ROLLUPS_FIELD: rollups,
                               schema.SYSTEM_FIELD: system})
    return client, run_id


def median_time(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall-clock seconds of ``repeat`` calls of ``work`` (and the last result)."""
    durations, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def largest(figs: list) -> int:
    return max((len(trace.x) for figure in figs for trace in figure.data), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--beat", type=int, default=10, help="seconds between heartbeats (Sacred's default: 10)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    client, run_id = build(args.points, args.hours, args.beat)
    db = client["sacred"]
    print(f"built in {time.perf_counter() - started:.0f} s: 'loss' {args.points:,} points "
          f"({db.metric_chunks.count_documents({'name': 'loss'}):,} chunks, one per heartbeat batch past the cap), "
          f"{db.system_samples.count_documents({}):,} system samples, "
          f"{db.metrics.count_documents({'name': {'$regex': '^sys/'}})} sys/ series")
    # mongomock holds the database in this process: tens of millions of objects that a server reading MongoDB
    # does not have. Freeze them out of the garbage collector's reach, or every collection walks them all.
    gc.collect()
    gc.freeze()
    board = Board(connect(client=client))
    def layouts() -> tuple[Any, Any]:
        view = board.store.run_plots(run_id)
        return run_metrics.layout(board, view), run_system.layout(board, view)

    layout_s, (layout, _) = median_time(layouts, args.repeat)
    run = next(child.data for child in layout.children if getattr(child, "id", None) == run_metrics.RUN)
    names = ["loss", "val_loss", "lr"]
    keys = [panel.key for panel in system_panels(run["system_names"])]
    rows: list[tuple[str, float, list]] = [("layout (components)", layout_s, [])]
    for name in names:
        seconds, figure = median_time(lambda name=name: run_metrics.metric_panel(board, run, name), args.repeat)
        rows.append((f"metric panel {name!r} (overview)", seconds, [figure]))
    seconds, system_figs = median_time(lambda: run_system.system_figures(board, run, keys, "elapsed"), args.repeat)
    rows.append((f"{len(keys)} system panels (overview)", seconds, system_figs))
    total = sum(seconds for _, seconds, _ in rows)
    page_figs = [figure for _, _, figs in rows for figure in figs]
    print(f"page load, server time of the plots' callbacks, median of {args.repeat} (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
    for label, seconds, figs in rows:
        print(f"  {label:<40} {seconds * 1000:8.0f} ms" + (f"   {largest(figs):,} points in its largest trace"
                                                         if figs else ""))
    points = largest(page_figs)
    size = sum(len(figure.to_json()) for figure in page_figs)
    system_size = sum(len(figure.to_json()) for figure in system_figs)
    system_met = system_size <= SYSTEM_JSON_TARGET
    print(f"System tab: {len(keys)} panels, {sum(len(f.data) for f in system_figs)} traces, their JSON "
          f"{system_size / 1e3:.0f} KB uncompressed (target <= {SYSTEM_JSON_TARGET / 1e3:.0f} KB -> "
          f"{'MET' if system_met else 'NOT MET'})")
    met = "MET" if total < TARGET_S else "NOT MET"
    print(f"total {total:.2f} s (target < {TARGET_S:.0f} s on mongomock -> {met}); "
          f"largest trace {points:,} points (target <= {figures.MAX_POINTS:,} -> "
          f"{'MET' if points <= figures.MAX_POINTS else 'NOT MET'}); figures' JSON {size / 1e6:.2f} MB")
    stop = dt.datetime.fromisoformat(run["stop"])
    wide = int(args.points * 0.75), int(args.points * 0.8)
    narrow = int(args.points * 0.95), int(args.points * 0.955)
    later = [
        ("'loss' overview, wall time, EMA 0.9", lambda: run_metrics.metric_panel(board, run, "loss", "wall", 0.9)),
        (f"'loss' zoom to steps {wide[0]:,}-{wide[1]:,}",
         lambda: run_metrics.metric_panel(board, run, "loss", zoom=wide)),
        (f"'loss' zoom to steps {narrow[0]:,}-{narrow[1]:,}", lambda: run_metrics.metric_panel(board, run, "loss",
                                                                                            zoom=narrow)),
        ("system zoom to the last hour", lambda: run_system.system_figures(
            board, run, keys, "wall", (str(stop - dt.timedelta(hours=1)), str(stop)))),
        ("system zoom to the last 10 minutes", lambda: run_system.system_figures(
            board, run, keys, "wall", (str(stop - dt.timedelta(minutes=10)), str(stop)))),
    ]
    print("after the page load, one run each:")
    for label, work in later:
        seconds, result = median_time(work, 1)
        figs = result if isinstance(result, list) else [result]
        note = next((a.text for a in figs[0].layout.annotations if a.name == "note"), "")
        print(f"  {label:<40} {seconds * 1000:8.0f} ms   {largest(figs):,} points in its largest trace; {note}")
    return 0 if total < TARGET_S and points <= figures.MAX_POINTS and system_met else 1


if __name__ == "__main__":
    sys.exit(main())

"""A simulated 30-day run sampled at 1 Hz: no stored document passes MongoDB's 16 MB limit; bytes per sample.

    python benchmarks/month_run.py [--days 30] [--beat 10]

A fake clock drives the real sampling pipeline (``Sampler.tick`` -> ``SystemMonitor.window``) with two simulated
GPUs (the real ``GpuCollector`` over ``FakeNvml``) and a replayed host (all host metrics, synthetic values), one
heartbeat window every ``--beat`` samples. Each window's samples are written in bulk through ``MongoWriter`` into a
mongomock database, and every stored document is measured as the BSON MongoDB would receive:
- tier 2 (``system_samples``): each sample document; the collection is emptied after each simulated day once
  measured, to bound mongomock's memory;
- tier 1 (Sacred-format ``sys/...`` series): the whole documents as they stand at the end of the run (they are
  accumulated here in memory and inserted once at the end: mongomock copies a document on every ``$push``);
- tier 3: the run document's ``system`` roll-ups.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time

import bson
import mongomock

from sacred_gpu import connection, schema
from sacred_gpu.record.writer import MongoWriter
from sacred_gpu.sampling.gpu_collector import GpuCollector
from sacred_gpu.sampling.monitor import SystemMonitor
from sacred_gpu.sampling.sampler import Sampler
from sacred_gpu.schema.catalog import CATALOG
from sacred_gpu.testing.fake_nvml import FakeGpu, FakeNvml, two_gpus

LIMIT = 16 * 1024 * 1024
HOST_METRICS = [spec for spec in CATALOG if not spec.name.startswith("sys/gpu")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.start = dt.datetime(2026, 1, 1)

    def __call__(self) -> float:
        return self.now

    def wall(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.now)


class ReplayHost:
    """Every host metric of the catalog, with values that move like a training job's."""

    name = "host"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def start(self) -> None: ...

    def close(self) -> None: ...

    def sample(self, slow: bool) -> dict[str, float]:
        phase = math.sin(self.clock.now / 600)
        return {spec.name: 50.0 + 40.0 * phase for spec in HOST_METRICS if slow or spec.tier == "fast"}


def simulated_monitor(clock: FakeClock) -> tuple[list[FakeGpu], Sampler, SystemMonitor]:
    """The real sampling pipeline on ``clock``: two simulated GPUs (returned, to drive them) and a replayed host,
    opened, at 1 Hz / 10 s."""
    gpus = two_gpus()
    sampler = Sampler([GpuCollector(FakeNvml(gpus), pids=lambda: set()), ReplayHost(clock)], 1.0, 10.0,
                      clock=clock, wallclock=clock.wall)
    monitor = SystemMonitor(sampler=sampler, gpu_names={0: gpus[0].name, 1: gpus[1].name})
    sampler.open()
    return gpus, sampler, monitor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--beat", type=int, default=10, help="samples per heartbeat window (Sacred's default: 10 s)")
    args = parser.parse_args()

    clock = FakeClock()
    gpus, sampler, monitor = simulated_monitor(clock)
    db = connection.open_client(client=mongomock.MongoClient())["sacred"]
    writer = MongoWriter(db)
    writer.ensure_indexes()
    run_id = writer.insert_run({"status": "RUNNING", "info": {}})

    series: dict[str, dict[str, list]] = {}
    samples_total = sample_bytes = sample_max = 0
    started = time.perf_counter()
    total = int(args.days * 86400)
    for tick in range(total):
        clock.now = float(tick + 1)
        gpus[0].util_pct = 80 + (tick % 20)
        gpus[0].memory_used_bytes = (40 + (tick // 3600) % 30) * 1024**3
        sampler.tick(slow=tick % 10 == 0)
        if tick % args.beat == args.beat - 1 or tick == total - 1:
            window = monitor.window()
            writer.insert_samples(run_id, window.samples)
            for when, values in window.samples:
                size = len(bson.encode(schema.sample_document(run_id, when, values)))
                samples_total, sample_bytes, sample_max = samples_total + 1, sample_bytes + size, max(sample_max, size)
            for name, (step, value, stamp) in window.points.items():
                doc = series.setdefault(name, {"steps": [], "values": [], "timestamps": []})
                doc["steps"].append(step), doc["values"].append(value), doc["timestamps"].append(stamp)
            writer.update_run(run_id, {schema.SYSTEM_FIELD: window.rollups})
        if tick % 86400 == 86399:
            db[writer.collections.samples].delete_many({})
            print(f"  day {(tick + 1) // 86400:>3}: {samples_total} samples, {time.perf_counter() - started:.0f} s",
                  flush=True)
    for name, (step, value, stamp) in monitor.thinner.flush().items():
        doc = series[name]
        doc["steps"].append(step), doc["values"].append(value), doc["timestamps"].append(stamp)

    series_sizes = {}
    for name, doc in series.items():
        full = {"_id": schema.new_object_id(), "run_id": run_id, "name": name, **doc}
        series_sizes[name] = len(bson.encode(full))
        writer.metrics.insert_one(full)
    run_size = len(bson.encode(db.runs.find_one({"_id": run_id})))
    biggest = max(series_sizes, key=series_sizes.get)
    points = len(series[biggest]["steps"])
    series_bytes = sum(series_sizes.values())

    print(f"simulated {args.days:g} days at 1 Hz: {samples_total} samples, {total // args.beat} heartbeat windows, "
          f"{len(series)} series ({time.perf_counter() - started:.0f} s)")
    print(f"tier 2 sample documents: mean {sample_bytes / samples_total:.0f} B, max {sample_max} B")
    print(f"tier 1 largest series: {biggest} with {points} points, {series_sizes[biggest] / 1e6:.2f} MB")
    print(f"tier 3 run document: {run_size} B")
    largest = max(sample_max, max(series_sizes.values()), run_size)
    print(f"largest document: {largest / 1e6:.2f} MB (limit 16.78 MB) -> {'OK' if largest < LIMIT else 'OVER'}")
    print(f"bytes stored per sample: {sample_bytes / samples_total:.0f} (tier 2) + "
          f"{series_bytes / samples_total:.1f} (tier 1) + {run_size / samples_total:.4f} (tier 3) = "
          f"{(sample_bytes + series_bytes + run_size) / samples_total:.0f} B, uncompressed BSON")
    return 0 if largest < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())

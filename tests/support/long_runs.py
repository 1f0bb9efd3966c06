"""A long run recorded through the real observer: a series far past the metric cap, and samples of two GPUs."""

from __future__ import annotations

import time

from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.read import RunStore, connect
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.experiments import run_experiment


def record_long_run(client, monkeypatch) -> RunStore:
    """Record run 1: 'loss' of 30,000 points past a cap of 2,000 (chunks of 1,000 points) with a spike at step
    25,000, 'acc' of 3 points, and samples of two simulated GPUs; returns a store on the database."""
    monkeypatch.setattr(schema, "METRIC_CAP", 2_000)
    monkeypatch.setattr(schema, "CHUNK_POINTS", 1_000)

    def main(_run):
        for step in range(30_000):
            _run.log_scalar("loss", 100.0 if step == 25_000 else 1.0 / (1 + step), step)
            if step % 10_000 == 0:
                time.sleep(0.15)  # several heartbeats, several batches
        for step in range(3):
            _run.log_scalar("acc", 0.5 + step / 10, step)

    run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml(two_gpus()), sample_interval=0.02,
                                          slow_sample_interval=0.05))
    return connect(client=client)

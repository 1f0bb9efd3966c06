"""Runs recorded by real Sacred experiments through GpuMongoObserver, for the board's tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sacred_gpu import GpuMongoObserver
from sacred_gpu.read.store import RunStore, connect
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.experiments import run_experiment

HOSTILE = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=1</script>"


def record_runs(client: Any, specs: list[dict[str, Any]]) -> RunStore:
    """Record one run per spec: ``{"lr", "losses", "name", "fail"}``; returns a store on the database."""
    for spec in specs:
        def main(_run: Any, lr: float) -> float:
            for step, loss in enumerate(spec["losses"]):
                _run.log_scalar("loss", loss, step)
                _run.log_scalar("acc", 1.0 - loss, step)
            if spec.get("fail"):
                raise RuntimeError("diverged")
            return spec["losses"][-1]

        observer = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False)
        config = {"lr": spec["lr"], "note": spec.get("note", "plain")}
        if spec.get("fail"):
            with pytest.raises(RuntimeError):
                run_experiment(main, observer, config=config, name=spec.get("name", "mnist"))
        else:
            run_experiment(main, observer, config=config, name=spec.get("name", "mnist"))
    return connect(client=client)


#: Five runs: two experiments, one failed, a hostile experiment name and config value.
RUNS = [
    {"lr": 0.1, "losses": [0.9, 0.5, 0.4]},
    {"lr": 0.01, "losses": [0.8, 0.3, 0.2]},
    {"lr": 0.001, "losses": [0.95, 0.7, 0.6], "name": "cifar"},
    {"lr": 0.5, "losses": [0.9, 2.0], "fail": True},
    {"lr": 0.05, "losses": [0.7, 0.35, 0.25], "name": HOSTILE, "note": SCRIPT},
]


def gpu_run(client, lr: float, metric: str | None = None) -> None:
    """A run on two simulated GPUs sampled every 0.05 s; it logs ``metric`` (three points) when given."""

    def main(_run):
        for step in range(3):
            if metric:
                _run.log_scalar(metric, 1.0 + step, step)
            time.sleep(0.2)

    run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml(two_gpus()), sample_interval=0.05),
                   config={"lr": lr, "note": "gpu"})


class RunningGpuRun:
    """A real Sacred run (experiment ``prom_exp``) on two simulated GPUs sampled every 0.02 s, in a thread: it logs
    ``loss`` at steps 0-2 (last value 1/3), then runs until :meth:`finish` (or 60 s). ``with`` starts it and waits
    for the points, and finishes it."""

    def __init__(self, client: Any) -> None:
        self.logged, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(client,))

    def _run(self, client: Any) -> None:
        def main(_run: Any) -> None:
            for step in range(3):
                _run.log_scalar("loss", 1.0 / (step + 1), step)
            self.logged.set()
            self.done.wait(60)

        run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml(two_gpus()), sample_interval=0.02),
                       name="prom_exp")

    def __enter__(self) -> RunningGpuRun:
        self.thread.start()
        assert self.logged.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> None:
        self.done.set()
        self.thread.join(30)

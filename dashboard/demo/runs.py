"""Demo data: the ``examples/`` experiments run through the real observer, one run for every status a board shows.

:func:`populate` records into any pymongo-compatible client (``sacred-gpu demo`` and ``sacred-board --demo`` pass
an in-memory mongomock one):

- ``train_digits``: a learning-rate sweep (COMPLETED), and a learning rate far too high, stopped by the example's
  divergence guard in its first epoch (FAILED, with the trace);
- ``train_diabetes``: a regression and an L2-penalty ablation of it (COMPLETED);
- a run only queued with Sacred's ``--queue`` (QUEUED);
- two runs in subprocesses, recorded offline (journal only) and uploaded afterwards with :mod:`sacred_gpu.record.sync`:
  one stopped with Ctrl-C (SIGINT: INTERRUPTED), one killed with SIGKILL (left RUNNING with a heartbeat that no
  longer moves: readers show it as PROBABLY_DEAD once it is older than their ``dead_after``, 120 s by default);
- tags and notes (Omniboard's fields) set through :class:`~sacred_gpu.read.store.RunStore`.

With no NVIDIA GPU on the machine, the in-process runs read two simulated GPUs (named ``... (simulated)``) whose
readings follow a training job's phases, drawn for each run (:mod:`.simulated`); with one, they read the real GPUs (idle: the examples train on the CPU). The runs in
subprocesses always read the real NVML."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.demo.background import start_background
from dashboard.demo.examples import OPTIONS, load_example
from dashboard.demo.quiet import run_output_only
from dashboard.demo.simulated import SIMULATED_GPU, SimulatedLoad, real_gpu_present, simulated_gpus
from sacred_gpu import GpuMongoObserver
from sacred_gpu.read import connect
from sacred_gpu.testing.fake_nvml import FakeNvml

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoRun:
    """A run the demo records in this process: an example script with config updates.

    ``comment``: Sacred's ``--comment`` (``meta.comment``, which boards show when a run has no notes);
    ``queue``: only queue it (Sacred's ``--queue``); ``fails``: it is meant to fail; ``gpu_load``: how busy each
    simulated GPU is during the run (0 to 1).
    """

    script: str
    config: dict[str, Any]
    tags: tuple[str, ...] = ()
    notes: str | None = None
    comment: str | None = None
    queue: bool = False
    fails: bool = False
    gpu_load: tuple[float, float] = (0.9, 0.85)


#: The observer's sampling in the demo's runs, s: fast enough that runs of seconds fill every GPU panel.
SAMPLING = {"sample_interval": 0.1, "slow_sample_interval": 0.5}
_SWEEP = {"epochs": 80, "seed": 1}
_DIABETES = {"epochs": 400, "seed": 2}

#: The runs recorded in this process, in order.
DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("train_digits.py", {**_SWEEP, "learning_rate": 0.001}, tags=("lr-sweep",)),
    DemoRun("train_digits.py", {**_SWEEP, "learning_rate": 0.003, "hidden_units": [128]}, tags=("lr-sweep",)),
    DemoRun("train_digits.py", {**_SWEEP, "learning_rate": 0.0003, "hidden_units": [32, 32]}, tags=("lr-sweep",)),
    DemoRun("train_diabetes.py", {**_DIABETES, "alpha": 1.0}, tags=("baseline",), gpu_load=(0.35, 0.0),
            comment="regression baseline on the diabetes data"),
    DemoRun("train_diabetes.py", {**_DIABETES, "alpha": 0.001}, tags=("ablation",), gpu_load=(0.35, 0.0),
            notes="ablation: an L2 penalty 1000x lower than the baseline's"),
    DemoRun("train_digits.py", {**_SWEEP, "learning_rate": 10.0}, tags=("diverged",), fails=True,
            notes="learning rate 10 instead of 0.001: the max_loss guard stopped it in the first epoch"),
    DemoRun("train_digits.py", {"epochs": 200, "seed": 3, "hidden_units": [256, 128]}, queue=True,
            comment="queued with --queue: waits for a worker to run it"),
)


def gpu_seed(config: dict[str, Any]) -> int:
    """The seed of a run's simulated GPUs: its whole config's (the sweep's runs share their Sacred seed)."""
    return zlib.crc32(json.dumps(config, sort_keys=True, default=str).encode())


def _config(spec_config: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    return dict(spec_config, **({"epochs": epochs} if epochs else {}))


def record_run(spec: DemoRun, client: Any, db_name: str, spool: Path, *, epochs: int | None = None,
               simulate_gpus: bool = False) -> Any:
    """Run ``spec`` through the observer into ``client[db_name]``; returns the run id (failed runs included)."""
    experiment = load_example(spec.script).ex
    gpus = simulated_gpus() if simulate_gpus else []
    observer = GpuMongoObserver(client=client, db_name=db_name, spool_dir=spool, offline=False,
                                nvml=FakeNvml(gpus) if simulate_gpus else None, **SAMPLING)
    experiment.observers[:] = [observer]
    options = dict(OPTIONS, **({"--comment": spec.comment} if spec.comment else {}),
                   **({"--queue": True} if spec.queue else {}))
    config = _config(spec.config, epochs)
    logger.info("demo: %s %s with %s", "queueing" if spec.queue else "running", spec.script, config)
    load = SimulatedLoad([] if spec.queue else gpus, spec.gpu_load, seed=gpu_seed(config))
    with one_blas_thread(), run_output_only(experiment), load:
        try:
            experiment.run(config_updates=config, options=options)
        except Exception as exc:  # noqa: BLE001 - the failing demo run fails on purpose
            if not spec.fails:
                raise
            logger.info("demo: run %s failed as intended: %s: %s", observer.run_id, type(exc).__name__, exc)
    return observer.run_id


def one_blas_thread() -> Any:
    """Limit BLAS and OpenMP to one thread: the examples' small matrices gain nothing from more, and spinning BLAS
    threads beside the observer's threads and the subprocesses made the runs 2-3x slower on 2 cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn requires it; without it, the runs are only slower
        return contextlib.nullcontext()
    return threadpool_limits(1)


def populate(client: Any, db_name: str = "sacred", *, epochs: int | None = None, simulate_gpus: bool | None = None,
             background: bool = True) -> list[int]:
    """Record the demo runs into ``client[db_name]``; returns their run ids.

    ``epochs`` overrides every run's epoch count (the runs in subprocesses are then ended after that many epochs,
    at most 10); ``simulate_gpus``: read simulated GPUs (default: when NVML finds no NVIDIA GPU); ``background``:
    also the runs in subprocesses (INTERRUPTED and killed). About 30 s with the default epochs on 2 CPU cores
    (most of it real training), about 8 s with ``epochs=3``.
    """
    started = time.monotonic()
    if simulate_gpus is None:
        simulate_gpus = not real_gpu_present()
    if simulate_gpus:
        logger.info("demo: no NVIDIA GPU found; the runs read two simulated GPUs named %r", SIMULATED_GPU)
    store = connect(client=client, db_name=db_name)
    with tempfile.TemporaryDirectory(prefix="sacred-gpu-demo-") as folder:
        spool = Path(folder)
        running = start_background(spool, db_name, epochs) if background else []
        try:
            run_ids = []
            for spec in DEMO_RUNS:
                run_id = record_run(spec, client, db_name, spool, epochs=epochs, simulate_gpus=simulate_gpus)
                run_ids.append(run_id)
                _annotate(store, run_id, spec.tags, spec.notes)
            _mark_best(store, [run_id for run_id, spec in zip(run_ids, DEMO_RUNS) if "lr-sweep" in spec.tags])
            for job in running:
                run_id = job.upload(client, db_name)
                if run_id is not None:
                    run_ids.append(run_id)
                    notes = job.spec.notes.format(epoch=_last_epoch(store, run_id)) if job.spec.notes else None
                    _annotate(store, run_id, job.spec.tags, notes)
        finally:
            for job in running:
                job.stop()
    logger.info("demo: recorded %d runs in %.1f s", len(run_ids), time.monotonic() - started)
    return run_ids


def _annotate(store: Any, run_id: Any, tags: tuple[str, ...], notes: str | None) -> None:
    if tags:
        store.set_tags(run_id, tags)
    if notes:
        store.set_notes(run_id, notes)


def _mark_best(store: Any, run_ids: list[Any]) -> None:
    """Tag the completed run with the highest result ``best`` and say so in its notes."""
    finished = [store.run(run_id) for run_id in run_ids]
    finished = [doc for doc in finished if doc.get("status") == "COMPLETED" and doc.get("result") is not None]
    if finished:
        best = max(finished, key=lambda doc: doc["result"])
        store.set_tags(best["_id"], [*(best.get("omniboard") or {}).get("tags", []), "best"])
        store.set_notes(best["_id"], f"best val_acc of the learning-rate sweep: {best['result']:.4f}")


def _last_epoch(store: Any, run_id: Any) -> int:
    """The highest step of the run's own (non-system) metrics."""
    steps = store.metrics(run_id)["step"]
    return int(steps.max()) if len(steps) else 0

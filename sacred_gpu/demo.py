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
readings follow the run; with one, they read the real GPUs (idle: the examples train on the CPU). The runs in
subprocesses always read the real NVML.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from sacred_gpu import schema
from sacred_gpu.read.store import connect
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.observer import GpuMongoObserver
from sacred_gpu.record.sync import sync_spool
from sacred_gpu.sampling.gpu import Nvml
from sacred_gpu.testing.fake_nvml import FakeGpu, FakeNvml

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
#: Sacred options of every demo run: 1 s heartbeats, and output capture that works in any host process.
OPTIONS: dict[str, Any] = {"--beat-interval": 1.0, "--capture": "sys"}
#: Model name of the simulated GPUs (on machines without an NVIDIA GPU).
SIMULATED_GPU = "NVIDIA H100 80GB HBM3 (simulated)"


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


@dataclass(frozen=True)
class BackgroundRun:
    """A run the demo starts in a subprocess, offline, and ends with ``signal_name`` once it has trained a while.

    ``notes`` may name ``{epoch}``: the last epoch the run recorded.
    """

    script: str
    config: dict[str, Any]
    signal_name: str
    tags: tuple[str, ...] = ()
    notes: str | None = None


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

#: The runs recorded in subprocesses (POSIX only), started first and ended while the others run.
BACKGROUND_RUNS: tuple[BackgroundRun, ...] = (
    BackgroundRun("train_digits.py", {"epochs": 1000, "seed": 4, "hidden_units": [128, 64], "checkpoint_every": 5},
                  "SIGKILL", tags=("long",),
                  notes="the demo killed its process with SIGKILL after epoch {epoch}: no heartbeat since"),
    BackgroundRun("train_diabetes.py", {"epochs": 5000, "seed": 5}, "SIGINT",
                  notes="stopped with Ctrl-C (SIGINT) after epoch {epoch}"),
)


def load_example(filename: str) -> ModuleType:
    """Import a script from ``examples/`` (they live in the source tree, not in the installed package)."""
    path = EXAMPLES_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the demo runs the examples of a source checkout of sacred-gpu")
    spec = importlib.util.spec_from_file_location(f"sacred_gpu_examples.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- simulated GPUs ---------------------------------------------------------------------------------------------------
def real_gpu_present() -> bool:
    """Whether NVML finds at least one NVIDIA GPU here."""
    nvml = Nvml.open()
    if nvml is None:
        return False
    try:
        return nvml.device_count() > 0
    finally:
        nvml.close()


def simulated_gpus() -> list[FakeGpu]:
    """Two identical simulated GPUs, idle, named :data:`SIMULATED_GPU`."""
    return [FakeGpu(name=SIMULATED_GPU, uuid=f"GPU-0000000{i}-5151-4d11-a7ed-000000000000",
                    pci_bus_id=f"00000000:{0x17 + 0x4E * i:02X}:00.0") for i in range(2)]


class SimulatedLoad:
    """While a run goes, moves simulated GPUs' readings as a training job would (utilisation, memory, power,
    temperature, clocks, PCIe traffic), a step every ``period`` seconds; ``levels``: each GPU's busyness, 0 to 1."""

    def __init__(self, gpus: list[FakeGpu], levels: tuple[float, ...], *, seed: int = 0, period: float = 0.25):
        self.gpus, self.levels, self.period = gpus, levels, period
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sacred-gpu-demo-load", daemon=True)

    def __enter__(self) -> SimulatedLoad:
        if self.gpus:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for gpu, level in zip(self.gpus, self.levels):
                self.step(gpu, level)
            self._stop.wait(self.period)

    def step(self, gpu: FakeGpu, level: float) -> None:
        """One change of ``gpu``'s readings towards a load of ``level``."""
        busy = level * self._random.uniform(0.8, 1.0)
        target_used = int(level * 0.45 * gpu.memory_total_bytes)
        gpu.memory_used_bytes += (target_used - gpu.memory_used_bytes) // 3  # allocations ramp up
        gpu.util_pct, gpu.mem_util_pct = round(100 * busy), round(40 * busy)
        gpu.power_mw = int(70_000 + busy * 0.8 * (gpu.power_limit_mw - 70_000))
        gpu.temp_c += round((35 + 45 * level - gpu.temp_c) * 0.2)
        gpu.fan_pct = min(100, 30 + 2 * max(0, gpu.temp_c - 40))
        gpu.sm_clock_mhz = 1980 if gpu.temp_c < 70 else 1755
        gpu.clocks_event_reasons = 0 if gpu.temp_c < 70 else 0x20  # NVML's software thermal slowdown bit
        gpu.pcie_rx_kib_s = int(busy * self._random.uniform(0.5, 1.5) * 2_000_000)
        gpu.pcie_tx_kib_s = int(busy * self._random.uniform(0.5, 1.5) * 200_000)
        gpu.processes = [(os.getpid(), gpu.memory_used_bytes)] if level else []


# -- runs in this process ---------------------------------------------------------------------------------------------
def _config(spec_config: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    return dict(spec_config, **({"epochs": epochs} if epochs else {}))


def record_run(spec: DemoRun, client: Any, db_name: str, spool: Path, *, epochs: int | None = None,
               simulate_gpus: bool = False) -> Any:
    """Run ``spec`` through the observer into ``client[db_name]``; returns the run id (failed runs included)."""
    experiment = load_example(spec.script).ex
    gpus = simulated_gpus() if simulate_gpus else []
    observer = GpuMongoObserver(client=client, db_name=db_name, spool_dir=spool, offline=False,
                                nvml=FakeNvml(gpus) if simulate_gpus else None)
    experiment.observers[:] = [observer]
    options = dict(OPTIONS, **({"--comment": spec.comment} if spec.comment else {}),
                   **({"--queue": True} if spec.queue else {}))
    config = _config(spec.config, epochs)
    logger.info("demo: %s %s with %s", "queueing" if spec.queue else "running", spec.script, config)
    with _one_blas_thread(), SimulatedLoad([] if spec.queue else gpus, spec.gpu_load,
                                           seed=spec.config.get("seed", 0)):
        try:
            experiment.run(config_updates=config, options=options)
        except Exception as exc:  # noqa: BLE001 - the failing demo run fails on purpose
            if not spec.fails:
                raise
            logger.info("demo: run %s failed as intended: %s: %s", observer.run_id, type(exc).__name__, exc)
    return observer.run_id


def _one_blas_thread() -> Any:
    """Limit BLAS and OpenMP to one thread: the examples' small matrices gain nothing from more, and spinning BLAS
    threads beside the observer's threads and the subprocesses made the runs 2-3x slower on 2 cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn requires it; without it, the runs are only slower
        return contextlib.nullcontext()
    return threadpool_limits(1)


# -- runs in subprocesses ---------------------------------------------------------------------------------------------
class Subprocess:
    """A :class:`BackgroundRun` in a subprocess, offline into its own spool folder.

    A watcher thread ends it with its signal once its journal holds ``min_epochs`` epochs and ``min_seconds`` (s)
    have passed since the run started (its journal appeared); :meth:`upload` then syncs the journal into the
    database. The thread never logs (runs in this process capture the output).
    """

    def __init__(self, spec: BackgroundRun, spool: Path, db_name: str, *, epochs: int | None = None,
                 timeout: float = 90.0) -> None:
        self.spec, self.spool, self.timeout = spec, spool, timeout
        self.min_epochs = max(1, min(epochs, 10)) if epochs else 10
        self.min_seconds = 1.0 if epochs else 3.0
        self.epoch = 0  # the last epoch seen in the journal
        self.problem = ""  # why the run did not end as planned
        self.spool.mkdir(parents=True)
        self._stderr: IO[bytes] = open(self.spool.with_suffix(".stderr"), "w+b")
        overrides = [f"{key}={value!r}".replace(" ", "") for key, value in spec.config.items()]
        command = [sys.executable, str(EXAMPLES_DIR / spec.script), "-g", db_name,
                   "-b", str(OPTIONS["--beat-interval"]), "-C", OPTIONS["--capture"], "with", *overrides]
        # this checkout's sacred_gpu, offline into our spool, one BLAS thread (see _one_blas_thread)
        source = os.pathsep.join(filter(None, [str(EXAMPLES_DIR.parent), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=source, SACRED_GPU_OFFLINE="1", SACRED_GPU_SPOOL=str(self.spool),
                   **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
        self.process = subprocess.Popen(command, cwd=EXAMPLES_DIR.parent, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=self._stderr)
        self._thread = threading.Thread(target=self._watch, name="sacred-gpu-demo-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        started = run_started = time.monotonic()
        journal: Journal | None = None
        position = (1, 0)
        try:
            while time.monotonic() - started < self.timeout:
                if self.process.poll() is not None:
                    self.problem = f"exited with code {self.process.returncode} before it was stopped"
                    return
                if journal is None:
                    folders = [p.parent for p in self.spool.glob("run-*/state.json")]
                    journal = Journal(folders[0]) if folders else None
                    run_started = time.monotonic()
                if journal is not None:
                    for rec, position in journal.read(position):
                        if isinstance(rec, dict) and rec.get("op") == "metric" and schema.ORIGIN not in rec:
                            self.epoch = max([self.epoch, *rec["steps"]])
                    if self.epoch >= self.min_epochs and time.monotonic() - run_started >= self.min_seconds:
                        self._end(getattr(signal, self.spec.signal_name), _ending(journal, position))
                        return
                time.sleep(0.1)
            self.problem = f"had not recorded {self.min_epochs} epochs after {self.timeout:.0f} s"
            self._end(signal.SIGKILL)
        except Exception as exc:  # noqa: BLE001 - reported by upload(), on the main thread
            self.problem = f"could not be watched ({exc!r})"
            self.process.kill()
            self.process.wait()
        finally:
            if journal is not None:
                journal.close()

    def _end(self, signum: int, ending: Callable[[], bool] = lambda: False, patience: float = 30.0) -> None:
        """Send ``signum`` every 0.5 s until the process exits or its run is ``ending`` (journaled its end status),
        as a user presses Ctrl-C again (scikit-learn's ``partial_fit`` swallows a KeyboardInterrupt that lands inside
        it); SIGKILL after ``patience`` s."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if not ending():
                self.process.send_signal(signum)
            try:
                self.process.wait(0.5)
                return
            except subprocess.TimeoutExpired:
                continue
        self.problem = f"did not exit within {patience:.0f} s of {signal.Signals(signum).name}"
        self.process.kill()
        self.process.wait()

    def upload(self, client: Any, db_name: str) -> Any:
        """Wait for the run to be ended, sync its journal into ``client[db_name]``; returns the run id or None."""
        self._thread.join()
        self._stderr.seek(0)
        if self.problem:
            tail = self._stderr.read().decode("utf-8", "replace")[-2000:]
            logger.warning("demo: %s %s; its error output ends with:\n%s", self.spec.script, self.problem, tail)
        self._stderr.close()
        results = sync_spool(self.spool, client=client, db_name=db_name)
        run_ids = [result.run_id for result in results if result.outcome == "synced"]
        for result in results:
            if result.outcome != "synced":
                logger.warning("demo: could not upload %s: %s %s", result.folder, result.outcome, result.detail)
        return run_ids[0] if run_ids else None

    def stop(self) -> None:
        """Kill the subprocess if it still runs (populate failed meanwhile)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def _ending(journal: Journal, position: tuple[int, int]) -> Callable[[], bool]:
    """Whether the journal has, past ``position``, recorded the run's end status."""
    seen = False

    def ended() -> bool:
        nonlocal position, seen
        for rec, position in journal.read(position):
            ended = isinstance(rec, dict) and rec.get("op") == "update_run" and "status" in rec.get("fields", {})
            seen = seen or ended
        return seen

    return ended


def signals_end_processes() -> bool:
    """Whether SIGINT and SIGKILL can end a subprocess here (POSIX)."""
    return os.name == "posix" and hasattr(signal, "SIGKILL")


def start_background(spool: Path, db_name: str, epochs: int | None) -> list[Subprocess]:
    """Start :data:`BACKGROUND_RUNS`; none where signals cannot end a process (not POSIX), said in one log line."""
    if not signals_end_processes():
        logger.info("demo: no interrupted or killed runs on this platform (they need POSIX signals)")
        return []
    return [Subprocess(spec, spool / f"background-{i}", db_name, epochs=epochs)
            for i, spec in enumerate(BACKGROUND_RUNS)]


# -- populate ---------------------------------------------------------------------------------------------------------
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

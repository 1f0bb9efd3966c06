"""The demo's runs in subprocesses: recorded offline, ended with a signal (Ctrl-C, SIGKILL) once they trained a while,
then uploaded with ``sacred-gpu sync``'s code."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dashboard.demo.examples import EXAMPLES_DIR, OPTIONS
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.metric_records import logged_points
from sacred_gpu.record.sync import sync_spool

logger = logging.getLogger(__name__)


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


#: The runs recorded in subprocesses (POSIX only), started first and ended while the others run.
BACKGROUND_RUNS: tuple[BackgroundRun, ...] = (
    BackgroundRun("train_digits.py", {"epochs": 1000, "seed": 4, "hidden_units": [128, 64], "checkpoint_every": 5},
                  "SIGKILL", tags=("long",),
                  notes="the demo killed its process with SIGKILL after epoch {epoch}: no heartbeat since"),
    BackgroundRun("train_diabetes.py", {"epochs": 5000, "seed": 5}, "SIGINT",
                  notes="stopped with Ctrl-C (SIGINT) after epoch {epoch}"),
)


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
        with _sigint_not_ignored():
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
                        if logged_points(rec):
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


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """Python's SIGINT handler while a child starts, where this process ignores SIGINT (a board started with ``&``
    from a script): an ignored signal is inherited, and the child's run could then not be stopped with Ctrl-C."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


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

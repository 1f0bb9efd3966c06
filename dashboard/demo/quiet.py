"""The demo runs' output kept out of the board's terminal and in the runs' captured output.

An in-process Sacred run with ``--capture sys`` tees ``sys.stdout`` and ``sys.stderr`` (every thread's writes) into
its captured output *and* the terminal, and logs through the root logger (the board's terminal). While a demo run
goes, :func:`run_output_only` makes what the run's thread writes reach its captured output only, leaves every other
thread's writes on the terminal and out of the run's output, and gives the experiment a logger of its own whose lines
("Started run with ID", "Result", "Completed after") go where the run's thread writes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

logger = logging.getLogger(__name__)

#: The logger demo experiments log through: its lines go to the writing thread's ``sys.stderr``, never to the root.
RUNS_LOGGER = "sacred_gpu_demo_runs"


class ThreadStreams:
    """A text stream sending the writes of ``thread`` to ``mine`` and every other thread's to ``others``."""

    def __init__(self, thread: threading.Thread, mine: TextIO, others: TextIO) -> None:
        self.thread, self.mine, self.others = thread, mine, others

    def _target(self) -> TextIO:
        return self.mine if threading.current_thread() is self.thread else self.others

    def write(self, text: str) -> int:
        self._target().write(text)
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def __getattr__(self, name: str) -> Any:
        """What else a stream has (``encoding``, ``fileno``, ...): the other threads' stream's."""
        return getattr(self.others, name)


class _Discard(io.StringIO):
    """A text sink that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to ``sys.stderr`` as it is when a line is logged (inside a run: Sacred's tee)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ sets it; the property always answers
        pass

    def format(self, record: logging.LogRecord) -> str:
        """Sacred's format, the experiment's name without this logger's (``train_digits``, as Sacred logs it)."""
        name = record.name.removeprefix(RUNS_LOGGER + ".")
        return f"{record.levelname} - {name} - {record.getMessage()}"


def runs_logger() -> logging.Logger:
    """The logger of the demo's experiments: Sacred's format, INFO, not propagated to the board's terminal."""
    log = logging.getLogger(RUNS_LOGGER)
    if not log.handlers:
        log.addHandler(_CurrentStderr())
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


@contextlib.contextmanager
def run_output_only(experiment: Any) -> Iterator[None]:
    """While ``experiment`` runs on this thread: its output goes to the run's captured output only (Sacred's ``sys``
    capture), other threads' output to the terminal only. Restores ``sys.stdout`` and ``sys.stderr`` on exit."""
    thread = threading.current_thread()
    real_out, real_err = sys.stdout, sys.stderr
    nowhere = _Discard()  # what the run's thread writes past Sacred's tee (the tee kept it)
    sys.stdout = ThreadStreams(thread, nowhere, real_out)  # type: ignore[assignment]
    sys.stderr = ThreadStreams(thread, nowhere, real_err)  # type: ignore[assignment]
    experiment.logger = runs_logger()

    def others_out_of_the_run() -> None:
        """Pre-run hook, on the run's thread inside Sacred's capture: other threads' writes bypass the tee."""
        sys.stdout = ThreadStreams(thread, sys.stdout, real_out)  # type: ignore[assignment]
        sys.stderr = ThreadStreams(thread, sys.stderr, real_err)  # type: ignore[assignment]

    experiment.pre_run_hook(others_out_of_the_run)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = real_out, real_err

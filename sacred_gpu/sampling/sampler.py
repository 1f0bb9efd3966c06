"""The sampler thread: reads every collector on a drift-free schedule and buffers the samples. No I/O of its own."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

#: Samples kept when nobody drains them (heartbeats disabled): about 27 hours at 1 Hz. Oldest go first.
MAX_BUFFERED = 100_000


class Collector(Protocol):
    """One source of metrics. ``sample`` returns ``{name: value}``; what it cannot read it leaves out."""

    name: str

    def start(self) -> None: ...

    def sample(self, slow: bool) -> dict[str, float]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Sample:
    """One tick: wall time (naive UTC, like Sacred's), seconds since the sampler started, and the values."""

    time: dt.datetime
    elapsed: float
    values: dict[str, float]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Sampler:
    """Samples ``collectors`` every ``interval`` seconds (slow fields every ``slow_interval``) in a daemon thread."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        interval: float = 1.0,
        slow_interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], dt.datetime] = utcnow,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        if interval <= 0 or slow_interval <= 0:
            raise ValueError("sampling intervals must be positive (seconds); turn sampling off instead")
        self.collectors = list(collectors)
        self.interval = interval
        self.slow_every = max(1, round(slow_interval / interval))
        self._clock, self._wallclock = clock, wallclock
        self._buffer: deque[Sample] = deque(maxlen=max_buffered)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: set[str] = set()
        self._started_at = clock()
        self.ticks = 0
        self.cpu_seconds = 0.0  #: CPU time the ticks took, s (thread time)

    # -- life cycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread, which starts the collectors (probing devices takes time: never on the caller's thread,
        the training thread) and samples from one interval later."""
        self._thread = threading.Thread(target=self._run, name="sacred-gpu-sampler", daemon=True)
        self._thread.start()

    def open(self) -> None:
        """Start the collectors (probe devices, prime counters) without a thread: then call :meth:`tick`."""
        for collector in list(self.collectors):
            try:
                collector.start()
            except Exception:  # noqa: BLE001 - a collector that cannot start is left out, never fatal
                logger.warning("sacred-gpu: the %s collector could not start; left out", collector.name, exc_info=True)
                self.collectors.remove(collector)
                self._close(collector)
        self._started_at = self._clock()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and the collectors. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for collector in self.collectors:
            self._close(collector)
        self.collectors = []

    @staticmethod
    def _close(collector: Collector) -> None:
        try:
            collector.close()
        except Exception:  # noqa: BLE001
            logger.debug("closing the %s collector failed", collector.name, exc_info=True)

    def _run(self) -> None:
        self.open()
        due = self._clock() + self.interval
        while not self._stop.wait(max(0.0, due - self._clock())):
            try:
                self.tick(slow=self.ticks % self.slow_every == 0)
            except Exception:  # noqa: BLE001 - the thread never dies
                logger.debug("sampler tick failed", exc_info=True)
            due += self.interval
            late = self._clock() - due
            if late > 0:  # suspended or starved: skip the missed ticks instead of bursting
                due += math.ceil(late / self.interval) * self.interval

    # -- sampling -------------------------------------------------------------------------------------------------
    def tick(self, slow: bool) -> Sample:
        """Read every collector once and buffer the sample (called by the thread, or directly with a fake clock)."""
        cpu_start = time.thread_time()
        values: dict[str, float] = {}
        for collector in self.collectors:
            try:
                values.update(collector.sample(slow))
            except Exception:  # noqa: BLE001 - one failing source never costs the others
                if collector.name not in self._failed:
                    self._failed.add(collector.name)
                    logger.warning("sacred-gpu: the %s collector failed; retrying every tick", collector.name,
                                   exc_info=True)
        clean = {k: v for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        sample = Sample(self._wallclock(), self._clock() - self._started_at, clean)
        with self._lock:
            if len(self._buffer) == self._buffer.maxlen and "buffer" not in self._failed:
                self._failed.add("buffer")
                logger.warning("sacred-gpu: %d system samples buffered and none drained; dropping the oldest",
                               self._buffer.maxlen)
            self._buffer.append(sample)
        self.ticks += 1
        self.cpu_seconds += time.thread_time() - cpu_start
        return sample

    def drain(self) -> list[Sample]:
        """Take every buffered sample, oldest first."""
        with self._lock:
            samples = list(self._buffer)
            self._buffer.clear()
        return samples

"""One run's system monitoring: the sampler thread with its collectors, and what each heartbeat window yields."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from sacred_gpu.sampling.devices import Selected
from sacred_gpu.sampling.gpu import Nvml
from sacred_gpu.sampling.gpu_collector import GpuCollector
from sacred_gpu.sampling.host import HostCollector, ProcessTree
from sacred_gpu.sampling.sampler import Collector, Sampler
from sacred_gpu.sampling.window import Rollups, SeriesThinner, summarize


@dataclass
class Window:
    """What one window yields for storage: every sample (tier 2), series points (tier 1), roll-ups (tier 3)."""

    samples: list[tuple[dt.datetime, dict[str, float]]] = field(default_factory=list)
    points: dict[str, tuple[int, float, dt.datetime]] = field(default_factory=dict)
    rollups: dict[str, Any] = field(default_factory=dict)
    #: each metric's value over this window (by its window rule, before thinning; a slow metric this window did
    #: not sample: its value in the last window that did), and the window's last sample time
    latest: dict[str, float] = field(default_factory=dict)
    time: dt.datetime | None = None


class SystemMonitor:
    """Samples the host and the GPUs for one run; :meth:`window` hands over what was sampled since the last call.

    ``interval`` and ``slow_interval`` are in seconds; ``session`` and ``devices``: the run's NVML session and GPUs
    (:class:`~sacred_gpu.sampling.devices.RunGpus`; an empty list: no GPU is read), else ``nvml``, a
    pynvml-compatible module (default ``pynvml``) opened by the collector; ``gpus``: whether to read GPUs at all;
    ``gpu_names`` maps NVML indices to model names for the roll-ups.
    """

    def __init__(
        self,
        interval: float = 1.0,
        slow_interval: float = 10.0,
        *,
        nvml: Any = None,
        session: Nvml | None = None,
        devices: list[Selected] | None = None,
        gpus: bool = True,
        gpu_names: dict[int, str] | None = None,
        collectors: list[Collector] | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        if collectors is None:
            tree = ProcessTree()
            reads_gpus = gpus and (devices is None or bool(devices))  # the run's GPUs, where it named them
            collectors = [HostCollector(tree)] + ([GpuCollector(nvml, pids=tree.nvml_pids, session=session,
                                                                devices=devices)] if reads_gpus else [])
        self.sampler = sampler or Sampler(collectors, interval, slow_interval)
        self.rollups = Rollups(gpu_names)
        self._latest: dict[str, float] = {}  # each metric's value in the last window that had it
        self.thinner = SeriesThinner()
        self._last_step = -1
        self._lock = threading.Lock()

    def start(self) -> None:
        self.sampler.start()

    def stop(self) -> Window:
        """Stop sampling and hand over the last window, with every series' last merged point."""
        self.sampler.stop()
        window = self.window()
        with self._lock:
            window.points.update(self.thinner.flush())
        return window

    def stop_now(self) -> None:
        """Stop sampling without waiting for the thread (it ends after its current tick); the last window is lost."""
        self.sampler.stop(timeout=0)

    def window(self) -> Window:
        """Drain the samples taken since the last window and summarise them."""
        with self._lock:
            samples = self.sampler.drain()
            if not samples:
                return Window(rollups=self.rollups.document() if self.rollups.samples else {})
            self.rollups.update(samples)
            step = max(self._last_step + 1, int(samples[-1].elapsed))
            self._last_step = step
            stamp = samples[-1].time
            points = {}
            summary = summarize(samples)
            for name, value in summary.items():
                point = self.thinner.add(name, step, value, stamp)
                if point is not None:
                    points[name] = point
            self._latest.update(summary)  # slow metrics are sampled in some windows only
            return Window([(s.time, s.values) for s in samples], points, self.rollups.document(), dict(self._latest),
                          stamp)

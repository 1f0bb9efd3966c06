"""One sample of a run's GPUs through the real collector, on a simulated NVML: the run's session opened as the
observer opens it, the collector started (probing every field), one slow tick read, everything closed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def sample_once(nvml: Any, env: str | None = None, pids: Callable[[], set[int]] | None = None,
                pause: float = 0.0) -> dict[str, float]:
    """The values of one slow tick (``pause`` seconds after the collector started, which primes counters)."""
    from sacred_gpu.sampling.devices import RunGpus
    from sacred_gpu.sampling.gpu_collector import GpuCollector

    gpus = RunGpus.open(nvml, env)
    collector = GpuCollector(session=gpus.session, devices=gpus.selected, pids=pids)
    collector.start()
    try:
        time.sleep(pause)
        return collector.sample(slow=True)
    finally:
        collector.close()
        gpus.close()

"""sacred-gpu: a Sacred observer that records runs into MongoDB in Sacred's format, with their GPUs."""

from __future__ import annotations

from typing import Any

from sacred_gpu.observer import GpuMongoObserver, gpu_mongo_option

__version__ = "0.1.0"
__all__ = ["GpuMongoObserver", "connect", "gpu_mongo_option", "__version__"]


def connect(*args: Any, **kwargs: Any) -> Any:
    """``sacred_gpu.store.connect``: a RunStore for notebooks (imported on first use: it needs pandas)."""
    from sacred_gpu.store import connect as _connect

    return _connect(*args, **kwargs)

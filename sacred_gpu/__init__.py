"""sacred-gpu: a Sacred observer that records runs into MongoDB in Sacred's format, with their GPUs.

``import sacred_gpu`` loads nothing heavy: the observer (which needs Sacred, and Sacred pandas) is imported on first
use of :data:`GpuMongoObserver` or :data:`gpu_mongo_option`, the read API on first call of :func:`connect`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sacred_gpu.read.store import RunStore
    from sacred_gpu.record.observer import GpuMongoObserver, gpu_mongo_option

__version__ = "0.1.0"
__all__ = ["GpuMongoObserver", "__version__", "connect", "gpu_mongo_option"]

_FROM_OBSERVER = ("GpuMongoObserver", "gpu_mongo_option")


def __getattr__(name: str) -> Any:
    """The observer's names, imported on first use (PEP 562)."""
    if name in _FROM_OBSERVER:
        from sacred_gpu.record import observer

        value = getattr(observer, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sacred_gpu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_OBSERVER))


def connect(*args: Any, **kwargs: Any) -> RunStore:
    """``sacred_gpu.read.store.connect``: a RunStore for notebooks (imported on first use: it needs pandas)."""
    from sacred_gpu.read.store import connect as _connect

    return _connect(*args, **kwargs)

"""sacred-gpu: a Sacred observer that records runs into MongoDB in Sacred's format, with their GPUs."""

from __future__ import annotations

from sacred_gpu.observer import GpuMongoObserver, gpu_mongo_option

__version__ = "0.1.0"
__all__ = ["GpuMongoObserver", "gpu_mongo_option", "__version__"]

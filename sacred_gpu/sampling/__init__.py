"""Reading the machine: GPUs through NVML (:mod:`.gpu`, the single entry point of NVML calls, and
:mod:`.gpu_collector`), the host through psutil (:mod:`.host`), on a sampler thread (:mod:`.sampler`), summed up per
heartbeat window (:mod:`.window`) for one run (:mod:`.monitor`). What is sampled is the catalog's
(:mod:`sacred_gpu.schema.catalog`); a simulated NVML is :mod:`sacred_gpu.testing.fake_nvml`."""

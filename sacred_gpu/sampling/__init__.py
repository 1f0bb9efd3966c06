"""Reading the machine: GPUs through NVML (``gpu``), a simulated NVML for tests and the demo (``fake_nvml``)."""

"""Test doubles users may use too (documented API): :mod:`.fake_nvml` simulates NVIDIA GPUs through pynvml's own
interface and error classes, for tests and demos on machines without a GPU."""
